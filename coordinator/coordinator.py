"""The coordinator agent: listens to pressure events and keeps the swarm's level.

It subscribes to ``hm:{ns}:events`` and records the highest current level
across targets in the ``hm:{ns}:swarm`` hash, where ``swarm status`` reads it.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import redis

from hivemind.swarm.agent_base import AgentCore, Role
from hivemind.swarm.bus import Subscription
from hivemind.swarm.facade import ActorFacade
from hivemind.swarm.messages import Level, PressureEvent

__all__ = ["Coordinator", "CoordinatorCore"]

log = logging.getLogger(__name__)


class CoordinatorCore(AgentCore):
    """Subscribes to pressure events and tracks each target's level."""

    role: ClassVar[Role] = "coordinator"

    def on_start(self) -> None:
        self.levels: dict[str, Level] = {}
        self.events_seen = 0
        self._sub: Subscription | None = None
        self.spawn("events", self._event_loop)

    def describe(self) -> dict[str, Any]:
        return {
            "events_seen": self.events_seen,
            "level": self.level.value,
            "bus_errors": self.bus_errors(),
        }

    @property
    def level(self) -> Level:
        """The highest level any target is at (conservative when none is)."""
        return max(self.levels.values(), key=lambda lvl: lvl.rank, default=Level.CONSERVATIVE)

    def handle_event(self, event: PressureEvent) -> None:
        """Record ``event``'s level for its target and the swarm-wide level."""
        self.events_seen += 1
        self.levels[event.target] = event.level
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.swarm, "level", self.level.value)
        pipe.hincrby(self.keys.counters, "events", 1)
        pipe.execute()

    def _event_loop(self) -> None:
        sub = Subscription(self.redis, self.keys, [self.keys.events], expect=(PressureEvent,))
        self._sub = sub
        try:
            while not self.stopping:
                try:
                    got = sub.get(timeout_s=0.5)
                except redis.RedisError as exc:
                    log.warning("coordinator: event subscription lost: %s", exc)
                    raise
                if got is not None:
                    _, msg = got
                    assert isinstance(msg, PressureEvent)
                    self.handle_event(msg)
        finally:
            sub.close()

    def bus_errors(self) -> dict[str, int]:
        """Malformed or unexpected messages dropped by this coordinator, per channel."""
        return dict(self._sub.errors) if self._sub is not None else {}


class Coordinator(ActorFacade):
    core = CoordinatorCore
    role = "coordinator"
