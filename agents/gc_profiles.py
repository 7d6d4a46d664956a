"""The seed report's four GC profiles, as small pure pieces (the level rule is in swarm.vocab).

Split from :mod:`hivemind.agents.gc_optimizer` (which re-exports all of it
and documents what the profiles mean) so that the runtime inside a guarded
process can switch profiles without importing the optimizer, its
circular-reference detector and its statistics.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from types import MappingProxyType

from hivemind.swarm.record import frozen
from hivemind.swarm.vocab import (
    DEFAULT_TARGET_MB,
    LEVELS,
    LevelHysteresis,
    check_target,
    level_for,
    level_with_hysteresis,
    rank,
)

__all__ = [
    "DEFAULT_TARGET_MB",
    "GC_PROFILES",
    "LEVELS",
    "GCProfile",
    "LevelHysteresis",
    "apply_gc_profile",
    "check_target",
    "get_profile",
    "level_for",
    "level_with_hysteresis",
    "rank",
]


@frozen
class GCProfile:
    """One GC strategy: generation thresholds, collection period, pressure threshold."""

    name: str
    thresholds: tuple[int, int, int]
    period_s: float
    memory_threshold_fraction: float
    """Fraction of the target above which the periodic collection runs."""

    @property
    def seed_memory_threshold_mb(self) -> float:
        """The threshold as the seed wrote it, for the 1536 MB target."""
        return self.memory_threshold_fraction * DEFAULT_TARGET_MB

    def memory_threshold_mb(self, target_mb: float) -> float:
        """The periodic-collection threshold scaled to ``target_mb``."""
        check_target(target_mb)
        return self.memory_threshold_fraction * target_mb


def _profile(name: str, th: tuple[int, int, int], period: float, seed_mb: float) -> GCProfile:
    return GCProfile(name, th, period, seed_mb / DEFAULT_TARGET_MB)


GC_PROFILES: Mapping[str, GCProfile] = MappingProxyType(
    {
        "conservative": _profile("conservative", (700, 10, 10), 30.0, 1200.0),
        "balanced": _profile("balanced", (500, 8, 8), 15.0, 1000.0),
        "aggressive": _profile("aggressive", (300, 5, 5), 5.0, 800.0),
        "emergency": _profile("emergency", (100, 3, 3), 1.0, 600.0),
    }
)
"""The four seed profiles by name (read-only)."""


def get_profile(name: str) -> GCProfile:
    try:
        return GC_PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown GC profile {name!r}; expected one of {LEVELS}") from None


def apply_gc_profile(name: str) -> None:
    """Set the interpreter's GC thresholds to the profile's; nothing else.

    No thread, no collection: costs one ``gc.set_threshold`` call. Raises
    ValueError for an unknown name.
    """
    gc.set_threshold(*get_profile(name).thresholds)
