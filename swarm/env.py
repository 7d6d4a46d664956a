"""The one reader of ``HIVEMIND_*`` environment variables outside :class:`Settings`.

:class:`hivemind.swarm.settings.Settings` reads the same variables through
pydantic-settings for the CLI and the agents. The light paths (the runtime
inside a guarded process, the hooks, the state-folder lookup) cannot pay for
pydantic-settings, so they read through these functions instead: one prefix,
one rule for empty values, one place to grep.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Final

__all__ = ["ENV_PREFIX", "env_float", "env_name", "env_str"]

ENV_PREFIX: Final = "HIVEMIND_"


def env_name(name: str) -> str:
    """The variable for setting ``name``: ``env_name("target_mb") == "HIVEMIND_TARGET_MB"``."""
    return ENV_PREFIX + name.upper()


def env_str(name: str) -> str | None:
    """The value of ``HIVEMIND_<NAME>``, or None when it is unset or empty."""
    value = os.environ.get(env_name(name), "")
    return value or None


def env_float(name: str, default: float) -> float:
    """``HIVEMIND_<NAME>`` as a finite float > 0; ``default`` when unset or not one."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if math.isfinite(value) and value > 0 else default
