"""The seed report's four GC profiles and its level rule, as small pure pieces.

Split from :mod:`hivemind.agents.gc_optimizer` (which re-exports all of it
and documents what the profiles mean) so that the runtime inside a guarded
process can switch profiles without importing the optimizer, its
circular-reference detector and its statistics.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

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


DEFAULT_TARGET_MB = 1536.0
"""The seed report's target (1.5 GB); the profiles' thresholds are written for it."""

LEVELS: tuple[str, ...] = ("conservative", "balanced", "aggressive", "emergency")
"""Profile names from least to most aggressive."""
_RANK = {name: i for i, name in enumerate(LEVELS)}


def rank(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS` (0 = conservative); KeyError if unknown."""
    return _RANK[level]


@dataclass(frozen=True, slots=True)
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


def check_target(target_mb: float) -> None:
    if not (isinstance(target_mb, int | float) and target_mb > 0 and math.isfinite(target_mb)):
        raise ValueError(f"target_mb must be a finite number > 0, got {target_mb!r}")


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


def level_for(rss_mb: float, target_mb: float) -> str:
    """The seed's rule: which profile a process at ``rss_mb`` should run.

    ``> target`` emergency, ``> 0.9 target`` aggressive, ``> 0.7 target``
    balanced, else conservative. Pure; raises ValueError on a bad target
    or a negative RSS.
    """
    check_target(target_mb)
    if rss_mb < 0 or math.isnan(rss_mb):
        raise ValueError(f"rss_mb must be >= 0, got {rss_mb!r}")
    if rss_mb > target_mb:
        return "emergency"
    if rss_mb > target_mb * 0.9:
        return "aggressive"
    if rss_mb > target_mb * 0.7:
        return "balanced"
    return "conservative"


def level_with_hysteresis(
    current: str, rss_mb: float, target_mb: float, margin: float = 0.05
) -> str:
    """:func:`level_for` with a de-escalation margin, pure.

    Moving up is immediate. Moving down happens only to the level that
    ``rss_mb + margin * target_mb`` would get, i.e. once RSS is at least
    ``margin`` of the target below the boundary; otherwise ``current`` stays.
    """
    cur_rank = _RANK.get(current)
    if cur_rank is None:
        raise ValueError(f"unknown GC profile {current!r}; expected one of {LEVELS}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be within [0, 1), got {margin!r}")
    raw = level_for(rss_mb, target_mb)
    if _RANK[raw] >= cur_rank:
        return raw
    lowered = level_for(rss_mb + margin * target_mb, target_mb)
    return lowered if _RANK[lowered] < cur_rank else current


class LevelHysteresis:
    """Stateful level tracker: margin plus a minimum dwell before stepping down.

    ``update(rss_mb)`` returns the level to run. Escalation is always
    immediate; a step down also needs ``min_dwell_s`` since the last change.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        target_mb: float,
        *,
        margin: float = 0.05,
        min_dwell_s: float = 10.0,
        initial: str = "conservative",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_target(target_mb)
        if min_dwell_s < 0:
            raise ValueError(f"min_dwell_s must be >= 0, got {min_dwell_s!r}")
        get_profile(initial)
        level_with_hysteresis(initial, 0.0, target_mb, margin)  # validates margin
        self.target_mb = float(target_mb)
        self.margin = margin
        self.min_dwell_s = min_dwell_s
        self.level = initial
        self._clock = clock
        self._changed_at = clock()
        self.changes = 0

    def update(self, rss_mb: float) -> str:
        """Feed one RSS sample; returns the (possibly unchanged) level."""
        proposed = level_with_hysteresis(self.level, rss_mb, self.target_mb, self.margin)
        if proposed == self.level:
            return self.level
        now = self._clock()
        if _RANK[proposed] < _RANK[self.level] and now - self._changed_at < self.min_dwell_s:
            return self.level
        self.level = proposed
        self._changed_at = now
        self.changes += 1
        return proposed
