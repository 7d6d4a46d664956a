"""The hooks tests' ``hook_env`` fixture, for the journal tests here."""

from tests.hooks.conftest import hook_env

__all__ = ["hook_env"]
