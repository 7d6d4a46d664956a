"""The GC optimizer and widget optimizer agents: authenticated decisions in, signed commands out.

The coordinator routes each decision to the optimizer that owns it
(:func:`~hivemind.swarm.messages.owner_of`: the widget optimizer owns a
decision that includes any pool, cache or user reclaim action, the GC
optimizer the rest) on that optimizer's own channel, sealed with the
swarm's key. An optimizer

- checks the decision before it signs anything: sealed under the key and
  fresh (the bus refuses it otherwise), addressed to this optimizer, not
  seen before (a replayed decision id is refused), with actions;
- turns it into exactly one signed command, so the target runs its actions
  in the policy's order (evict caches *before* the collection and
  ``malloc_trim`` that return the freed memory);
- tracks the command until the target's sealed ack comes back, and reports
  what happened to it: ``acked``, ``refused`` (the target said why, in
  ``Ack.error``) or ``timeout`` (no ack within ``ack_timeout_s``), as
  session events and counters (``commands``, ``refused``, ``timeouts``,
  swarm-wide and per target).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from cachetools import TTLCache
from pydantic import BaseModel

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.agent.base import AgentCore, Role
from hivemind.swarm.messages import WIDGET_KINDS, Ack, Command, Decision, owner_of
from hivemind.swarm.signing import sign

__all__ = ["WIDGET_KINDS", "GCOptimizerCore", "WidgetOptimizerCore", "owner_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Sent:
    decision: Decision
    sent: float  # monotonic


class _OptimizerCore(AgentCore):
    ack_timeout_s: ClassVar[float] = 5.0
    max_pending: ClassVar[int] = 10_000

    def on_start(self) -> None:
        self.commands_sent = 0
        self.outcomes: Counter[str] = Counter()  # acked, refused, timeout
        self.rejected: Counter[str] = Counter()  # decisions this optimizer would not sign
        self.pending: dict[str, _Sent] = {}  # command id -> what it was for
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=120.0)
        self._last_sweep = time.monotonic()
        self.store = SessionStore(self.redis, self.keys, maxlen=self.config.stream_maxlen)
        self.spawn(
            "bus",
            self.subscribe(
                {self.keys.decisions(self.role): (Decision,), self.keys.acks: (Ack,)},
                self._on_message,
                tick=self._tick,
            ),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "commands_sent": self.commands_sent,
            "pending": len(self.pending),
            "outcomes": dict(self.outcomes),
            "rejected": dict(self.rejected),
            "bus_errors": self.bus_errors(),
        }

    # --- decisions --------------------------------------------------------
    def command_for(self, decision: Decision) -> Command | None:
        """The signed command for an authenticated ``decision``, or ``None`` if refused.

        Refused (and counted in ``rejected``): a decision another optimizer
        owns (``not_mine``), one without actions (``empty``), one whose id
        was already turned into a command (``replayed``), or any decision
        when this optimizer holds no key (``no_key``).
        """
        reason = None
        if not self.secret:
            reason = "no_key"
        elif owner_of(decision) != self.role:
            reason = "not_mine"
        elif not decision.actions:
            reason = "empty"
        elif decision.id in self._seen:
            reason = "replayed"
        if reason is not None:
            self.rejected[reason] += 1
            return None
        assert self.secret is not None
        self._seen[decision.id] = True
        cmd = Command(
            decision_id=decision.id,
            target=decision.target,
            actions=decision.actions,
            sample_ts=decision.sample_ts,
            ts=time.time(),
        )
        return sign(cmd, self.secret)

    def _on_message(self, channel: str, msg: BaseModel) -> None:
        if isinstance(msg, Decision):
            self._on_decision(msg)
        elif isinstance(msg, Ack):
            self._on_ack(msg)

    def _on_decision(self, decision: Decision) -> None:
        cmd = self.command_for(decision)
        if cmd is None:
            return
        if len(self.pending) >= self.max_pending:  # bounded: the oldest give up first
            self._sweep(time.monotonic(), force=len(self.pending) // 10 or 1)
        pipe = self.redis.pipeline(transaction=False)
        pipe.publish(self.keys.cmd(cmd.target), cmd.model_dump_json())
        pipe.hincrby(self.keys.counters, "commands", 1)
        pipe.hincrby(self.keys.target_counters(cmd.target), "commands", 1)
        pipe.execute()
        self.pending[cmd.id] = _Sent(decision, time.monotonic())
        self.commands_sent += 1

    # --- acks and time-outs -----------------------------------------------
    def _on_ack(self, ack: Ack) -> None:
        sent = self.pending.get(ack.command_id)
        if sent is None or sent.decision.target != ack.target:
            return  # another optimizer's command, or one we already gave up on
        del self.pending[ack.command_id]
        if ack.ok or not ack.error:
            self.outcomes["acked"] += 1
            return
        self.outcomes["refused"] += 1
        self._report(sent.decision, "refused", {"command_id": ack.command_id, "error": ack.error})

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= 0.5:
            self._last_sweep = now
            self._sweep(now)

    def _sweep(self, now: float, force: int = 0) -> None:
        """Report commands unacked for ``ack_timeout_s`` (and the ``force`` oldest) as timed out."""
        late = [c for c, s in self.pending.items() if now - s.sent > self.ack_timeout_s]
        if force:
            late += [c for c in list(self.pending)[:force] if c not in late]
        for command_id in late:
            sent = self.pending.pop(command_id)
            self.outcomes["timeout"] += 1
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.keys.counters, "timeouts", 1)
            pipe.hincrby(self.keys.target_counters(sent.decision.target), "timeouts", 1)
            pipe.execute()
            self._report(sent.decision, "timeout", {"command_id": command_id})

    def _report(self, decision: Decision, kind: str, data: dict[str, Any]) -> None:
        fields = {"decision_id": decision.id, "target": decision.target, "agent": self.role}
        try:
            self.store.append(decision.session_id, kind, {**fields, **data})
        except Exception as exc:  # the session may be gone; the counters still have it
            log.debug("%s: could not record %s: %s", self.name, kind, exc)


class GCOptimizerCore(_OptimizerCore):
    """Signs GC-only decisions: profile, collect, malloc_trim."""

    role: ClassVar[Role] = "gc_optimizer"


class WidgetOptimizerCore(_OptimizerCore):
    """Signs decisions that reclaim pools, caches or the user's own memory."""

    role: ClassVar[Role] = "widget_optimizer"
