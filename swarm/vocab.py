"""The swarm's vocabulary, said once: units, defaults, levels and their rule, roles, actions.

Everything here is pure and imports only the standard library, so the
runtime inside a guarded process, the hooks and the CLI can all use it
without paying for pydantic or Ray. Other modules import these names; none
defines its own copy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import StrEnum

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Final, Literal

    AgentRole = Literal["coordinator", "benchmarker", "gc_optimizer", "widget_optimizer"]

__all__ = [
    "AGENT_ROLES",
    "DEFAULT_TARGET_MB",
    "LEVELS",
    "MB",
    "ActionKind",
    "AgentRole",
    "Level",
    "LevelHysteresis",
    "check_target",
    "classify",
    "level_for",
    "level_with_hysteresis",
    "rank",
]

MB: Final = 1024 * 1024
"""Bytes in a megabyte (MiB): every ``*_mb`` figure in hivemind uses it."""

DEFAULT_TARGET_MB: Final = 1536.0
"""The default memory target per guarded process: the seed report's 1.5 GB."""


class Level(StrEnum):
    """Pressure levels, lowest first; the names match the seed's four GC profiles."""

    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        """0 for conservative up to 3 for emergency."""
        return _RANK[self.value]


LEVELS: Final[tuple[str, ...]] = tuple(level.value for level in Level)
"""Level names from least to most aggressive."""
_RANK: Final = {name: i for i, name in enumerate(LEVELS)}

AGENT_ROLES: Final[tuple[AgentRole, ...]] = (
    "coordinator",
    "benchmarker",
    "gc_optimizer",
    "widget_optimizer",
)
"""The four agents of a swarm, in the order status shows them."""


def __getattr__(name: str) -> object:
    """``AgentRole`` at run time (``Literal`` of :data:`AGENT_ROLES`), built when first asked."""
    if name == "AgentRole":
        from typing import Literal

        return Literal[AGENT_ROLES]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ActionKind(StrEnum):
    """What a target may be told to do; nothing outside this list ever runs."""

    GC_PROFILE = "gc_profile"
    COLLECT = "collect"
    TRIM_POOLS = "trim_pools"
    EVICT_CACHES = "evict_caches"
    MALLOC_TRIM = "malloc_trim"
    RECLAIM = "reclaim"  # a user-registered reclaim action, by name
    EMERGENCY = "emergency"


def rank(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS` (0 = conservative); KeyError if unknown."""
    return _RANK[level]


def check_target(target_mb: float) -> None:
    """Raise ValueError unless ``target_mb`` is a finite number > 0."""
    if not (isinstance(target_mb, int | float) and target_mb > 0 and math.isfinite(target_mb)):
        raise ValueError(f"target_mb must be a finite number > 0, got {target_mb!r}")


def level_for(rss_mb: float, target_mb: float) -> str:
    """The seed's rule: which level a process at ``rss_mb`` is at.

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
        raise ValueError(f"unknown level {current!r}; expected one of {LEVELS}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be within [0, 1), got {margin!r}")
    raw = level_for(rss_mb, target_mb)
    if _RANK[raw] >= cur_rank:
        return raw
    lowered = level_for(rss_mb + margin * target_mb, target_mb)
    return lowered if _RANK[lowered] < cur_rank else current


def classify(rss_bytes: int, target_bytes: int, previous: Level, margin: float = 0.05) -> Level:
    """The level of ``rss_bytes`` for ``target_bytes``: the seed's rule, margin going down."""
    return Level(level_with_hysteresis(previous.value, rss_bytes / MB, target_bytes / MB, margin))


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
        if initial not in _RANK:
            raise ValueError(f"unknown level {initial!r}; expected one of {LEVELS}")
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
