"""What ``hivemind top`` shows, as plain data: one :class:`Frame` per refresh.

A frame is built from Redis only (see :mod:`hivemind.swarm.cli.top.source`).
Fields that other parts of hivemind add over time (the guard's cost,
feasibility, discovered caches, degraded parts) are read by name where they
exist and shown as ``-`` where they do not, so an older swarm still shows.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COST_FIELDS",
    "FeedItem",
    "Frame",
    "Health",
    "TargetRow",
    "first_field",
    "human_bytes",
]

# Target-hash fields we show when the guard publishes them, by the names in use.
COST_FIELDS: dict[str, tuple[str, ...]] = {
    "gc_share": ("gc_share", "gc_time_share", "gc_frac", "gc_cost"),
    "gc_ms_per_s": ("gc_ms_per_s",),
    "pause_p99_ms": ("gc_pause_p99_ms", "pause_p99_ms", "gc_p99_ms"),
    "infeasible": ("infeasible", "infeasible_mb", "feasible", "feasibility"),
    "caches": ("caches", "discovered_caches", "reclaimable"),
}
_KNOWN = {
    "name",
    "pid",
    "rss_bytes",
    "target_bytes",
    "level",
    "last_action",
    "last_seen",
}


_FALSY = {"", "0", "0.0", "false", "no", "infeasible"}


def first_field(fields: dict[str, str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` present in ``fields``, else ``None``."""
    for name in names:
        value = fields.get(name)
        if value not in (None, ""):
            return value
    return None


def human_bytes(n: float) -> str:
    """``n`` bytes as a short string: ``512K``, ``12.3M``, ``1.2G``."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= 2**30:
        return f"{sign}{n / 2**30:.1f}G"
    if n >= 10 * 2**20:
        return f"{sign}{n / 2**20:.0f}M"
    if n >= 2**20:
        return f"{sign}{n / 2**20:.1f}M"
    return f"{sign}{n / 2**10:.0f}K"


@dataclass(slots=True)
class FeedItem:
    """One decision or ack, as the feed shows it."""

    ts: float
    kind: str  # "decision" | "ack" | "timeout"
    target: str
    level: str
    text: str
    decision_id: str = ""
    bytes_freed: int = 0


@dataclass(slots=True)
class TargetRow:
    """One guarded process: its hash, its counters and what the feed said last."""

    name: str
    pid: int | None = None
    rss_bytes: int = 0
    target_bytes: int = 0
    level: str = "conservative"
    last_action: str = ""
    last_seen: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    decided: FeedItem | None = None  # the last decision for it
    acked: FeedItem | None = None  # the last ack from it

    @classmethod
    def from_hash(cls, key_name: str, h: dict[str, str]) -> TargetRow:
        """Build a row from a ``hm:{ns}:target:{name}`` hash (missing fields default)."""

        def num(name: str) -> float:
            try:
                return float(h.get(name) or 0)
            except ValueError:
                return 0.0

        return cls(
            name=h.get("name") or key_name,
            pid=int(num("pid")) or None,
            rss_bytes=int(num("rss_bytes")),
            target_bytes=int(num("target_bytes")),
            level=h.get("level") or "conservative",
            last_action=h.get("last_action", ""),
            last_seen=num("last_seen"),
            extra={k: v for k, v in h.items() if k not in _KNOWN},
        )

    @property
    def ratio(self) -> float:
        """RSS over target (0 when the target is unknown)."""
        return self.rss_bytes / self.target_bytes if self.target_bytes else 0.0

    def alive(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.last_seen < 5.0

    def gc_percent(self) -> float | None:
        """Time in the collector, % of wall time (``gc_ms_per_s`` / 10), if published."""
        raw = self.cost("gc_ms_per_s")
        if raw is not None:
            try:
                return float(raw) / 10.0
            except ValueError:
                return None
        raw = self.cost("gc_share")
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            return None
        return value * 100 if value <= 1.0 else value

    def cost(self, what: str) -> str | None:
        """A cost or feasibility field (see :data:`COST_FIELDS`), ``None`` if not published."""
        return first_field(self.extra, COST_FIELDS[what])

    def feasibility(self) -> str:
        """``ok``, ``NO`` (live data over the target) or ``-`` when not published."""
        state = self.extra.get("controller")
        if state is not None:
            return "NO" if state == "infeasible" else "ok"
        for name in ("infeasible", "infeasible_mb"):
            if name in self.extra:
                return "ok" if self.extra[name].strip().lower() in _FALSY else "NO"
        for name in ("feasible", "feasibility"):
            if name in self.extra:
                return "NO" if self.extra[name].strip().lower() in _FALSY else "ok"
        return "-"

    def caches(self) -> list[dict[str, Any]]:
        """Discovered caches (a JSON list of objects in the hash), ``[]`` if none published."""
        raw = self.cost("caches")
        if not raw:
            return []
        try:
            data = json.loads(raw)
        except ValueError:
            return [{"name": raw}]
        if isinstance(data, dict):
            return [
                {"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in data.items()
            ]
        if isinstance(data, list):
            return [d if isinstance(d, dict) else {"name": str(d)} for d in data]
        return []


@dataclass(slots=True)
class Health:
    """The swarm as a whole: agents, Redis, Ray, restarts, what is degraded."""

    namespace: str = ""
    session_id: str = ""
    level: str = "conservative"
    state: str = ""
    uptime_s: float = 0.0
    agents_alive: int = 0
    agents_total: int = 0
    restarts: int = 0
    redis: str = ""
    ray: str = ""
    degraded: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Frame:
    """Everything one refresh of the dashboard draws.

    ``waiting`` is set (with ``message``) when there is no swarm to show.
    """

    ts: float
    waiting: bool = False
    message: str = ""
    health: Health = field(default_factory=Health)
    targets: dict[str, TargetRow] = field(default_factory=dict)
    feed: deque[FeedItem] = field(default_factory=lambda: deque(maxlen=200))
    history: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)
