"""The swarm's health record on disk: ``health.json`` in the state folder.

The supervisor's watcher (:mod:`hivemind.swarm.lifecycle.watch`) and the
keeper (:mod:`hivemind.swarm.lifecycle.keeper`) write it; ``swarm status``
reads it, so what is down, since when, and how often each part was
restarted is known even while Redis itself is down. Written atomically
(mode 0600). This module imports nothing heavy: the keeper uses it.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hivemind.swarm.paths import write_private_file

__all__ = ["COMPONENTS", "Component", "Health", "read_health", "remove_health", "write_health"]

HEALTH_FILE = "health.json"
# What the supervisor watches, in the order status shows them.
COMPONENTS = (
    "redis",
    "ray_head",
    "coordinator",
    "benchmarker",
    "gc_optimizer",
    "widget_optimizer",
    "supervisor",
)


@dataclass(slots=True)
class Component:
    """One watched part: ``up`` or ``down`` since ``since``, and its restarts so far."""

    state: str = "up"
    since: float = field(default_factory=time.time)
    pid: int | None = None
    restarts: int = 0
    last_restart: float = 0.0
    last_down_s: float = 0.0
    reason: str = ""


@dataclass(slots=True)
class Health:
    """Every watched part of one swarm, plus why it stopped if it gave up."""

    components: dict[str, Component] = field(default_factory=dict)
    stopped_reason: str = ""
    updated: float = field(default_factory=time.time)

    def part(self, name: str) -> Component:
        """The record of ``name``, created (up, now) on first use."""
        if name not in self.components:
            self.components[name] = Component()
        return self.components[name]

    def down(self) -> dict[str, Component]:
        """The parts that are down now."""
        return {k: c for k, c in self.components.items() if c.state != "up"}

    def restarts(self) -> dict[str, int]:
        """Restarts per part (every part listed, 0 when never restarted)."""
        return {k: c.restarts for k, c in self.components.items()}

    def mark_down(self, name: str, reason: str, now: float | None = None) -> bool:
        """Record ``name`` as down (keeps the first ``since``); True if it was up."""
        part = self.part(name)
        if part.state != "up":
            return False
        part.state, part.since, part.reason = "down", now or time.time(), reason
        return True

    def mark_up(self, name: str, pid: int | None, *, restarted: bool) -> float:
        """Record ``name`` as up again; count a restart if ``restarted``; return the downtime."""
        part = self.part(name)
        now = time.time()
        down_s = now - part.since if part.state != "up" else 0.0
        if restarted:
            part.restarts += 1
            part.last_restart = now
            part.last_down_s = round(down_s, 3)
        if part.state != "up" or restarted:
            part.since = now
        part.state, part.pid = "up", pid
        return down_s


def read_health(state_dir: Path) -> Health | None:
    """The recorded health, or ``None`` when there is none or it is unreadable."""
    try:
        raw = json.loads((state_dir / HEALTH_FILE).read_text(encoding="utf-8"))
        comps = {k: Component(**v) for k, v in raw.get("components", {}).items()}
        return Health(
            components=comps,
            stopped_reason=str(raw.get("stopped_reason", "")),
            updated=float(raw.get("updated", 0.0)),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_health(state_dir: Path, health: Health) -> None:
    """Atomically write ``health.json`` (mode 0600); never raises."""
    health.updated = time.time()
    with contextlib.suppress(OSError):
        write_private_file(state_dir / HEALTH_FILE, json.dumps(asdict(health), indent=1))


def remove_health(state_dir: Path) -> None:
    """Forget the health record (after an orderly stop)."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / HEALTH_FILE).unlink()
