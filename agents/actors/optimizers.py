"""The GC optimizer and widget optimizer agents: decisions in, signed commands out.

Each decision becomes exactly one command, so the target runs its actions
in the policy's order (evict caches *before* the collection and
``malloc_trim`` that return the freed memory). The widget optimizer owns a
decision that includes any pool, cache or user reclaim action; the GC
optimizer owns the rest (profile changes, collections, freeze, trim).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from hivemind.swarm.agent.base import AgentCore, Role, node_secret
from hivemind.swarm.messages import ActionKind, Command, Decision
from hivemind.swarm.redis.bus import Subscription
from hivemind.swarm.signing import sign

__all__ = ["WIDGET_KINDS", "GCOptimizerCore", "WidgetOptimizerCore", "owner_of"]

WIDGET_KINDS = frozenset(
    {ActionKind.TRIM_POOLS, ActionKind.EVICT_CACHES, ActionKind.RECLAIM, ActionKind.EMERGENCY}
)


def owner_of(decision: Decision) -> Role:
    """Which optimizer agent turns ``decision`` into a command."""
    if any(a.kind in WIDGET_KINDS for a in decision.actions):
        return "widget_optimizer"
    return "gc_optimizer"


class _OptimizerCore(AgentCore):
    def on_start(self) -> None:
        self._key = node_secret(self.config)
        self.commands_sent = 0
        self._sub: Subscription | None = None
        self.spawn("decisions", self._loop)

    def describe(self) -> dict[str, Any]:
        return {
            "commands_sent": self.commands_sent,
            "bus_errors": dict(self._sub.errors) if self._sub else {},
        }

    def command_for(self, decision: Decision) -> Command | None:
        """The signed command for ``decision`` if this agent owns it, else ``None``."""
        if owner_of(decision) != self.role or not decision.actions:
            return None
        cmd = Command(
            decision_id=decision.id,
            target=decision.target,
            actions=decision.actions,
            sample_ts=decision.sample_ts,
            ts=time.time(),
        )
        return sign(cmd, self._key)

    def _loop(self) -> None:
        sub = Subscription(self.redis, self.keys, [self.keys.decisions], expect=(Decision,))
        self._sub = sub
        try:
            while not self.stopping:
                got = sub.get(timeout_s=0.5)
                if got is None:
                    continue
                decision = got[1]
                assert isinstance(decision, Decision)
                cmd = self.command_for(decision)
                if cmd is None:
                    continue
                pipe = self.redis.pipeline(transaction=False)
                pipe.publish(self.keys.cmd(cmd.target), cmd.model_dump_json())
                pipe.hincrby(self.keys.counters, "commands", 1)
                pipe.hincrby(self.keys.target_counters(cmd.target), "commands", 1)
                pipe.execute()
                self.commands_sent += 1
        finally:
            sub.close()


class GCOptimizerCore(_OptimizerCore):
    """Sends GC-only decisions: profile, collect, freeze, malloc_trim."""

    role: ClassVar[Role] = "gc_optimizer"


class WidgetOptimizerCore(_OptimizerCore):
    """Sends decisions that reclaim pools, caches or the user's own memory."""

    role: ClassVar[Role] = "widget_optimizer"
