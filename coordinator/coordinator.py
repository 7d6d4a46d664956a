"""The coordinator agent: pressure events in, decisions out, acks learned from.

It subscribes to ``hm:{ns}:events`` and ``hm:{ns}:acks`` (both sealed with
the swarm's key: the benchmarker seals events, each target its acks;
anything else is dropped and counted) and ``hm:{ns}:control``. For each
event it asks the pure policy (:func:`hivemind.coordinator.policy.decide`)
and publishes the decision, sealed, on the owning optimizer's channel
(``hm:{ns}:decisions:{owner}``); for each ack of a decision it is still
waiting for, it records the measured effect in the session (events stream,
counters, learned table) and in the reaction-latency histogram, once. Per-target
history is kept in Redis, so a restarted coordinator carries on where the
old one stopped; targets silent for ``forget_after_s`` are forgotten, and
at most ``max_targets`` are kept. A ``restore`` control message switches it
to another session: that session's learned table, level and settings come
back. A message its handler fails on is counted and dropped; the loop goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import asdict
from typing import Any, ClassVar

from cachetools import TTLCache
from pydantic import BaseModel

from hivemind.coordinator.policy import (
    LearnedStat,
    PolicyConfig,
    TargetHistory,
    decide,
    learned_key,
    record_ack,
)
from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.agent.base import AgentCore, Role
from hivemind.swarm.agent.facade import ActorFacade
from hivemind.swarm.keys import LATENCY_BUCKETS_MS
from hivemind.swarm.messages import (
    Ack,
    ActionKind,
    Control,
    Decision,
    Level,
    PressureEvent,
    owner_of,
)
from hivemind.swarm.redis.bus import publish
from hivemind.swarm.target.controller import CTL_T0_SETTING

__all__ = ["ACK_TIMEOUT_S", "Coordinator", "CoordinatorCore"]

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 5.0
LATENCY_KEEP = 20_000
COST_RECORD_EVERY_S = 5.0


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode() if isinstance(raw, bytes) else raw


def _bucket(ms: float) -> str:
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"le_{bound:g}"
    return "le_inf"


class CoordinatorCore(AgentCore):
    """Policy, sessions and learning for the whole swarm."""

    role: ClassVar[Role] = "coordinator"
    forget_after_s: ClassVar[float] = 300.0
    max_targets: ClassVar[int] = 4096

    def on_start(self) -> None:
        self.policy = PolicyConfig()
        self.store = SessionStore(self.redis, self.keys, maxlen=self.config.stream_maxlen)
        self.histories: dict[str, TargetHistory] = self._load_histories()
        now = time.monotonic()
        self.last_seen: dict[str, float] = dict.fromkeys(self.histories, now)
        self.pending: dict[str, tuple[Decision, float]] = {}
        self.decision_ms: deque[float] = deque(maxlen=10_000)  # real decisions only
        self.queue_ms: deque[float] = deque(maxlen=10_000)  # event published -> decided
        self.events_declined = 0  # events that led to no decision (cooldown, nothing to do)
        self.events_seen = 0
        self.session_id = ""
        self.learned: dict[str, LearnedStat] = {}
        self._cost_recorded: dict[str, float] = {}
        self._infeasible: dict[str, bool] = {}
        self._held_t0: dict[str, int] = {}
        self._reclaims: dict[str, deque[dict[str, Any]]] = {}  # target -> its last reclaims
        self._own_acks: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=120.0)
        current = self.redis.hget(self.keys.swarm, "session_id")
        self.use_session(self.config.session_id or _text(current) or None)
        self._last_sweep = time.monotonic()
        expect: dict[str, tuple[type[BaseModel], ...]] = {
            self.keys.events: (PressureEvent,),
            self.keys.acks: (Ack,),
            self.keys.control: (Control,),
        }
        self.spawn("bus", self.subscribe(expect, self._on_message, tick=self._tick))

    # --- status -----------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        ms = sorted(self.decision_ms)
        qs = sorted(self.queue_ms)
        return {
            "session_id": self.session_id,
            "events_seen": self.events_seen,
            "level": self.level.value,
            "pending": len(self.pending),
            "targets": len(self.histories),
            "decision_ms_p50": ms[len(ms) // 2] if ms else None,
            "decision_ms_p99": ms[int(len(ms) * 0.99)] if ms else None,
            "decision_n": len(ms),
            "queue_ms_p50": qs[len(qs) // 2] if qs else None,
            "queue_ms_p99": qs[int(len(qs) * 0.99)] if qs else None,
            "events_declined": self.events_declined,
            "bus_errors": self.bus_errors(),
        }

    @property
    def level(self) -> Level:
        """The highest level any target is at (conservative when none is)."""
        return max(
            (h.level for h in self.histories.values()),
            key=lambda lvl: lvl.rank,
            default=Level.CONSERVATIVE,
        )

    # --- sessions ---------------------------------------------------------
    def use_session(self, session_id: str | None) -> str:
        """Start, resume or restore ``session_id`` (a new one when ``None``)."""
        sid, created = self.store.ensure(session_id, {"source": "swarm", "namespace": self.keys.ns})
        self.session_id = sid
        self._cost_recorded.clear()  # record cost and state afresh in this session
        self._infeasible.clear()
        self._held_t0.clear()
        self.learned = {
            k: LearnedStat(n=e.n, bytes_freed=e.mean_bytes_freed, duration_ms=e.mean_ms)
            for k, e in self.store.learned_table(sid).items()
        }
        self.store.set_settings(sid, {"target_mb": self.config.target_mb})
        self.store.append(
            sid, "swarm", {"op": "created" if created else "resumed", "pid": self.pid}
        )
        self.redis.hset(self.keys.swarm, "session_id", sid)
        return sid

    def restore(self, session_id: str) -> None:
        """Take back ``session_id``'s learned table, level and settings."""
        snap = self.store.snapshot(session_id, recent=0)
        self.use_session(session_id)
        self.redis.hset(self.keys.swarm, "level", snap.level or Level.CONSERVATIVE.value)
        log.info(
            "coordinator: restored session %s (%d learned actions)", session_id, len(self.learned)
        )

    # --- events -----------------------------------------------------------
    def handle_event(self, event: PressureEvent) -> Decision | None:
        """Decide for ``event``'s target; publish and record the decision if any."""
        self.events_seen += 1
        self._seen(event.target)
        if event.cost is not None:
            self._record_cost(event)
        t0 = time.perf_counter()
        history = self.histories.get(event.target, TargetHistory())
        decision, new = decide(
            event,
            history,
            now=time.time(),
            session_id=self.session_id,
            learned=self.learned,
            config=self.policy,
        )
        if decision is None:
            self.events_declined += 1
            if new is not history:  # a level change with nothing to send: remembered
                self._remember(event.target, new, self.redis)
            return None
        publish(self.redis, self.keys.decisions(owner_of(decision)), decision, self.secret)
        self.decision_ms.append((time.perf_counter() - t0) * 1000)
        self.queue_ms.append(max(0.0, (decision.ts - event.ts) * 1000))
        self.pending[decision.id] = (decision, time.monotonic())
        pipe = self.redis.pipeline(transaction=False)
        self._remember(event.target, new, pipe)
        pipe.hset(self.keys.swarm, "level", self.level.value)
        pipe.hincrby(self.keys.counters, "decisions", 1)
        pipe.hincrby(self.keys.target_counters(event.target), "decisions", 1)
        pipe.execute()
        if event.level is not history.level:
            self.store.set_level(self.session_id, self.level.value)
        self.store.append(
            self.session_id,
            "decision",
            {
                "decision_id": decision.id,
                "target": decision.target,
                "level": decision.level.value,
                "previous": event.previous.value,
                "rss_mb": round(event.rss_bytes / 2**20, 1),
                "target_mb": round(event.target_bytes / 2**20, 1),
                "actions": [learned_key("", a).lstrip("|") for a in decision.actions],
                "reason": decision.reason,
            },
        )
        return decision

    def _remember(self, target: str, history: TargetHistory, redis_or_pipe: Any) -> None:
        """Keep ``target``'s history here and in Redis (a restarted coordinator reloads it)."""
        self.histories[target] = history
        redis_or_pipe.hset(self.keys.coordinator_state, target, json.dumps(_history_json(history)))

    def _record_cost(self, event: PressureEvent) -> None:
        """Cost, infeasibility and the cheapest holding setting, into the session."""
        cost = event.cost
        assert cost is not None
        target = event.target
        infeasible = cost.controller == "infeasible"
        if infeasible != self._infeasible.get(target, False):
            self._infeasible[target] = infeasible
            over_mb = round(cost.live_over_bytes / 2**20, 1)
            self.store.append(
                self.session_id,
                "infeasible" if infeasible else "feasible",
                {
                    "target": target,
                    "live_over_mb": over_mb if infeasible else 0.0,
                    "rss_mb": round(event.rss_bytes / 2**20, 1),
                    "target_mb": round(event.target_bytes / 2**20, 1),
                    "message": f"infeasible: live ~{over_mb:g} MB over target"
                    if infeasible
                    else "feasible again",
                },
            )
        if cost.held_t0 and cost.held_t0 != self._held_t0.get(target):
            self._held_t0[target] = cost.held_t0
            self.store.set_settings(self.session_id, {CTL_T0_SETTING + target: cost.held_t0})
        now = time.monotonic()
        if now - self._cost_recorded.get(target, -1e9) >= COST_RECORD_EVERY_S:
            self._cost_recorded[target] = now
            self.store.append(
                self.session_id,
                "cost",
                {"target": target, "rss_mb": round(event.rss_bytes / 2**20, 1)}
                | cost.model_dump(mode="json"),
            )

    def handle_ack(self, ack: Ack) -> None:
        """Record what a command freed; learn from it; time the reaction.

        The ack arrived sealed by a target (the bus drops anything else). It
        counts only once: an ack of a decision still pending, from that
        decision's target; or a target's report of its own reclaim (no
        ``decision_id``) whose ``command_id`` was not seen before. A replayed
        or stray ack changes nothing. A refusal (``ok=False`` with
        ``error``) is the optimizer's to report; it teaches nothing.
        """
        if ack.error:
            return
        if ack.phase == "effect":  # a command's cost to the app, measured after it (once)
            self.store.append(
                self.session_id,
                "effect",
                {
                    "command_id": ack.command_id,
                    "decision_id": ack.decision_id,
                    "target": ack.target,
                    "bytes_freed": ack.bytes_freed,
                    "duration_ms": round(ack.duration_ms, 3),
                    "gc_ms_per_s_before": ack.gc_ms_per_s_before,
                    "gc_ms_per_s_after": ack.gc_ms_per_s_after,
                },
                dedup_key=f"effect:{ack.command_id}",
            )
            return
        decision: Decision | None = None
        if ack.decision_id:
            pending = self.pending.get(ack.decision_id)
            if pending is None or pending[0].target != ack.target:
                return
            del self.pending[ack.decision_id]
            decision = pending[0]
        elif (own := f"{ack.target}|{ack.command_id}|{ack.ts!r}") in self._own_acks:
            return
        else:
            self._own_acks[own] = True
        if decision is not None and ack.target in self.histories:
            self.histories[ack.target] = record_ack(self.histories[ack.target], ack.bytes_freed)
        actions = decision.actions if decision is not None else ()
        for i, result in enumerate(ack.results):
            action = actions[i] if i < len(actions) else None
            if decision is not None:
                if action is None or action.kind is not result.kind:
                    continue  # results follow the command's actions; anything else is noise
                key = learned_key(ack.target, action)
            else:  # the target's own reclaim: learned by kind and name
                key = f"{ack.target}|{result.kind.value}" + (
                    f":{result.name}" if result.name else ""
                )
            self._learn(key, result.bytes_freed, result.duration_ms)
        total_ms = max(0.0, (ack.applied_ts - ack.sample_ts) * 1000) if ack.sample_ts else 0.0
        parts = None
        if decision is not None and ack.sample_ts:
            parts = [
                total_ms,
                (decision.event_ts - ack.sample_ts) * 1000,  # sampling + detection
                (decision.ts - decision.event_ts) * 1000,  # bus + policy
                (ack.received_ts - decision.ts) * 1000,  # optimizer agent + bus to target
                (ack.applied_ts - ack.received_ts) * 1000,  # apply in the target
            ]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.keys.counters, "acks", 1)
        pipe.hincrby(self.keys.counters, "bytes_freed", max(0, ack.bytes_freed))
        tkey = self.keys.target_counters(ack.target)
        pipe.hincrby(tkey, "acks", 1)
        pipe.hincrby(tkey, "bytes_freed", max(0, ack.bytes_freed))
        if parts is not None:
            pipe.hincrby(self.keys.latency, _bucket(total_ms), 1)
            pipe.hincrby(self.keys.latency, "count", 1)
            pipe.hincrbyfloat(self.keys.latency, "sum_ms", total_ms)
            row = [*(round(p, 3) for p in parts), ack.decision_id]
            pipe.lpush(self.keys.latency_raw, json.dumps(row))
            pipe.ltrim(self.keys.latency_raw, 0, LATENCY_KEEP - 1)
        pipe.execute()
        self.store.append(
            self.session_id,
            "ack",
            {
                "command_id": ack.command_id,
                "decision_id": ack.decision_id,
                "target": ack.target,
                "ok": ack.ok,
                "bytes_freed": ack.bytes_freed,
                "duration_ms": round(ack.duration_ms, 3),
                "latency_ms": round(total_ms, 3),
                "results": [r.model_dump(mode="json") for r in ack.results],
                "error": ack.error,
                "gc_ms_per_s_before": ack.gc_ms_per_s_before,
            },
            dedup_key=f"ack:{ack.command_id}",
            counters={"bytes_freed": max(0, ack.bytes_freed)},
        )
        self._record_reclaim(ack)

    def _record_reclaim(self, ack: Ack) -> None:
        """What the target found (its caches) and what each reclaim gave back, per target."""
        kinds = (ActionKind.RECLAIM, ActionKind.MALLOC_TRIM)
        reclaims = [r for r in ack.results if r.kind in kinds]
        if not ack.caches and not reclaims:
            return
        recent = self._reclaims.setdefault(ack.target, deque(maxlen=12))
        recent.extend(r.model_dump(mode="json") for r in reclaims)
        self.store.set_reclaim(
            self.session_id,
            ack.target,
            {
                "ts": ack.applied_ts or ack.ts,
                "caches": [c.model_dump(mode="json") for c in ack.caches],
                "last": list(recent),
            },
        )

    def _learn(self, key: str, freed: int, ms: float) -> None:
        n = self.store.learned_record(self.session_id, key, freed, ms)
        old = self.learned.get(key)
        if old is None or n <= 1:
            self.learned[key] = LearnedStat(n=n, bytes_freed=float(freed), duration_ms=ms)
            return
        self.learned[key] = LearnedStat(
            n=n,
            bytes_freed=old.bytes_freed + (freed - old.bytes_freed) / n,
            duration_ms=old.duration_ms + (ms - old.duration_ms) / n,
        )

    def sweep_timeouts(self, now: float) -> list[str]:
        """Stop waiting for decisions unacked for ``ACK_TIMEOUT_S``; return their targets.

        The optimizer that sent the command reports the time-out (counters and
        session event); here the decision only stops being learnable.
        """
        late = [d for d, (_, t) in self.pending.items() if now - t > ACK_TIMEOUT_S]
        return [self.pending.pop(decision_id)[0].target for decision_id in late]

    def _seen(self, target: str) -> None:
        if target not in self.last_seen and len(self.last_seen) >= self.max_targets:
            oldest = sorted(self.last_seen, key=self.last_seen.__getitem__)
            self.forget(oldest[: max(1, len(oldest) // 10)])
        self.last_seen[target] = time.monotonic()

    def forget(self, targets: list[str]) -> None:
        """Drop ``targets``' histories (in memory and in Redis)."""
        for name in targets:
            self.last_seen.pop(name, None)
            self.histories.pop(name, None)
        if targets:
            self.redis.hdel(self.keys.coordinator_state, *targets)

    def prune(self, now: float) -> list[str]:
        """Forget targets no event came from for ``forget_after_s``; return them."""
        gone = [n for n, t in self.last_seen.items() if now - t > self.forget_after_s]
        self.forget(gone)
        return gone

    def handle_control(self, control: Control) -> None:
        if control.op == "restore":
            try:
                self.restore(control.session_id)
            except Exception as exc:
                log.warning("coordinator: restore of %s failed: %s", control.session_id, exc)

    def _on_message(self, channel: str, msg: BaseModel) -> None:
        if isinstance(msg, PressureEvent):
            self.handle_event(msg)
        elif isinstance(msg, Ack):
            self.handle_ack(msg)
        elif isinstance(msg, Control):
            self.handle_control(msg)

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self.sweep_timeouts(now)
            self.prune(now)

    def _load_histories(self) -> dict[str, TargetHistory]:
        out = {}
        for target, raw in self.redis.hgetall(self.keys.coordinator_state).items():
            try:
                data = json.loads(raw)
                data["level"] = Level(data["level"])
                out[_text(target)] = TargetHistory(**data)
            except (ValueError, TypeError, KeyError):
                continue
        return out

    def reset_window(self) -> None:
        """Start the decision-time and queueing-delay windows afresh (benchmarks use it)."""
        self.decision_ms.clear()
        self.queue_ms.clear()
        self.events_declined = 0


def _history_json(h: TargetHistory) -> dict[str, Any]:
    data = asdict(h)
    data["level"] = h.level.value
    return data


class Coordinator(ActorFacade):
    """Typed facade over the coordinator actor."""

    core = CoordinatorCore
    role = "coordinator"

    def restore(self, session_id: str) -> None:
        """Switch the running coordinator to ``session_id``."""
        self.call("restore", session_id)

    def reset_window(self) -> None:
        """Clear the coordinator's decision-time and queueing-delay windows."""
        self.call("reset_window")
