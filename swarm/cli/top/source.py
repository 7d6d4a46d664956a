"""The dashboard's reader: one background thread that turns Redis into frames.

It finds the swarm in the state folder (as ``swarm status`` does), then
every ``period_s`` reads every target hash and its counters in one
pipelined round trip, once a second the swarm's health through
:func:`hivemind.swarm.observe.status.collect_status`, and in between
listens to ``hm:{ns}:decisions:{optimizer}`` and ``hm:{ns}:acks`` so a
decision reaches its row without waiting for the next poll (a display
only: it reads sealed messages without checking them and acts on nothing). It imports no Ray.
With no swarm (or its Redis gone) it reports that and keeps looking.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from hivemind.coordinator.sessions.store import (
    LearnedRow,
    RawEvent,
    decode_events,
    decode_learned,
    pairs,
)
from hivemind.swarm.cli.top.frame import FeedItem, Frame, Health, TargetRow, human_bytes
from hivemind.swarm.errors import HivemindError
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Ack, Decision, MessageError
from hivemind.swarm.observe.status import SwarmStatus, collect_status
from hivemind.swarm.redis.bus import peek_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.state import SwarmInfo, running_swarm

__all__ = ["TargetDetail", "TopSource", "feed_from_ack", "feed_from_decision"]

FEED_KEEP = 200
READ_SPREAD = 4  # each target's hash is re-read every 4th poll


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _action_text(kind: str, name: str | None) -> str:
    return f"{kind}:{name}" if name else kind


def feed_from_decision(d: Decision) -> FeedItem:
    """The feed line for a decision: level, actions and the policy's reason."""
    kinds = "+".join(_action_text(a.kind.value, a.name) for a in d.actions) or "no action"
    return FeedItem(
        ts=d.ts,
        kind="decision",
        target=d.target,
        level=d.level.value,
        text=f"{kinds} ({d.reason})" if d.reason else kinds,
        decision_id=d.id,
    )


def feed_from_ack(a: Ack) -> FeedItem:
    """The feed line for an ack: what was applied and what it freed."""
    kinds = "+".join(r.name or r.kind.value for r in a.results) or "command"
    verdict = "ok" if a.ok else f"FAILED {a.error}".strip()
    return FeedItem(
        ts=a.ts,
        kind="ack",
        target=a.target,
        level="",
        text=f"{kinds} freed {human_bytes(a.bytes_freed)} in {a.duration_ms:.1f} ms {verdict}",
        decision_id=a.decision_id,
        bytes_freed=a.bytes_freed,
    )


def _feed_from_event(ev: RawEvent) -> FeedItem | None:
    d = ev.data
    target = str(d.get("target", ""))
    if ev.kind == "decision":
        acts = "+".join(str(a) for a in d.get("actions", []))
        return FeedItem(
            ev.ts,
            "decision",
            target,
            str(d.get("level", "")),
            f"{acts} ({d.get('reason', '')})",
            str(d.get("decision_id", "")),
        )
    if ev.kind == "ack":
        freed = int(d.get("bytes_freed", 0) or 0)
        kinds = "+".join(str(r.get("name") or r.get("kind")) for r in d.get("results", []))
        return FeedItem(
            ev.ts,
            "ack",
            target,
            "",
            f"{kinds or 'command'} freed {human_bytes(freed)}",
            str(d.get("decision_id", "")),
            freed,
        )
    if ev.kind == "timeout":
        return FeedItem(
            ev.ts,
            "timeout",
            target,
            "",
            "no ack within the time-out",
            str(d.get("decision_id", "")),
        )
    return None


@dataclass(slots=True)
class TargetDetail:
    """What the detail view of one target shows."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    counters: dict[str, str] = field(default_factory=dict)
    timeline: list[FeedItem] = field(default_factory=list)  # newest first
    learned: dict[str, LearnedRow] = field(default_factory=dict)


def _health(st: SwarmStatus, info: SwarmInfo) -> Health:
    """The health line's data from ``swarm status``'s reader (whatever fields it has)."""
    down = list(getattr(st, "down", []) or [])
    degraded = [
        f"{d.component} down {d.down_s:.0f}s ({d.reason})" if hasattr(d, "component") else str(d)
        for d in down
    ]
    parts = {getattr(d, "component", "") for d in down}
    degraded += [f"agent {a.role} down" for a in st.agents if not a.alive and a.role not in parts]
    if st.redis.error and "redis" not in parts:
        degraded.append(f"redis: {st.redis.error}")
    restarts = getattr(st, "restarts", None)
    if isinstance(restarts, dict) and restarts:
        total = sum(int(v) for v in restarts.values())  # every part, agents included
    else:
        total = sum(a.restarts for a in st.agents)
    ray = info.ray_address or "local"
    if "ray_head" in parts:
        ray += " DOWN"
    return Health(
        namespace=st.namespace,
        session_id=st.session_id,
        level=st.level,
        state=str(getattr(st, "health", "") or st.state),
        uptime_s=st.uptime_s,
        agents_alive=sum(a.alive for a in st.agents),
        agents_total=len(st.agents),
        restarts=total,
        redis=f"{st.redis.mode} {st.redis.used_memory_mb:.1f}MB",
        ray=ray,
        degraded=degraded,
    )


class TopSource:
    """Reads the swarm recorded in ``state_dir`` and hands frames to the dashboard.

    ``on_frame`` gets a fresh :class:`Frame` every ``period_s`` (or a
    waiting frame when there is no swarm); ``on_event`` gets decisions, acks
    and time-outs as they arrive, in batches at most ``batch_s`` old. Both
    are called from the reader thread.
    """

    def __init__(
        self,
        state_dir: Path,
        on_frame: Callable[[Frame], None],
        on_event: Callable[[list[FeedItem]], None],
        *,
        period_s: float = 0.25,
        health_every_s: float = 1.0,
        heartbeat_s: float = 1.0,
        batch_s: float = 0.05,
    ) -> None:
        self.state_dir = state_dir
        self.batch_s = batch_s
        self.on_frame = on_frame
        self.on_event = on_event
        self.period_s = period_s
        self.health_every_s = health_every_s
        self.heartbeat_s = heartbeat_s
        self.dropped = 0  # malformed messages on the feed channels
        self.client: redis.Redis | None = None
        self.keys: Keys | None = None
        self.info: SwarmInfo | None = None
        self._pubsub: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health = Health()
        self._health_ts = 0.0
        self._feed: deque[FeedItem] = deque(maxlen=FEED_KEEP)
        self._decided: dict[str, FeedItem] = {}
        self._acked: dict[str, FeedItem] = {}
        self._rows: dict[str, TargetRow] = {}
        self._names: list[str] = []
        self._tick = 0

    # --- life -------------------------------------------------------------
    def start(self) -> TopSource:
        self._thread = threading.Thread(target=self._run, name="hivemind-top-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
        self._disconnect()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.client is None and not self._connect():
                self._stop.wait(1.0)
                continue
            try:
                self._cycle()
            except (redis.RedisError, OSError, HivemindError) as exc:
                self._disconnect()
                self._emit_waiting(f"lost the swarm's Redis ({exc}); retrying")
                self._stop.wait(1.0)

    def _emit_waiting(self, message: str) -> None:
        with contextlib.suppress(Exception):
            self.on_frame(Frame(ts=time.time(), waiting=True, message=message))

    def _connect(self) -> bool:
        info = running_swarm(self.state_dir)
        if info is None:
            self._emit_waiting(
                f"no swarm is running on {self.state_dir}; waiting for one "
                "(start it with `hivemind swarm up`)"
            )
            return False
        try:
            client = connect(info.redis_url)
            keys = Keys(info.namespace)
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(
                keys.decisions("gc_optimizer"), keys.decisions("widget_optimizer"), keys.acks
            )
        except (redis.RedisError, OSError, HivemindError) as exc:
            self._emit_waiting(f"swarm found on {self.state_dir} but its Redis fails ({exc})")
            return False
        self.client, self.keys, self.info, self._pubsub = client, keys, info, pubsub
        self._rows, self._names = {}, []
        self._health_ts = 0.0
        self._seed_feed()
        return True

    def _disconnect(self) -> None:
        pubsub, client = self._pubsub, self.client
        self._pubsub = self.client = None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                pubsub.close()
        with contextlib.suppress(Exception):
            if client is not None:
                client.close()

    # --- reading ------------------------------------------------------------
    def _cycle(self) -> None:
        """One poll: health when due, every target, then listen until the next poll."""
        started = time.monotonic()
        now = time.time()
        if started - self._health_ts >= self.health_every_s or not self._health.namespace:
            self._health_ts = started
            assert self.info is not None
            if running_swarm(self.state_dir) is None:
                raise HivemindError("the swarm stopped")
            self._health = _health(
                collect_status(self.state_dir, self.heartbeat_s, with_targets=False), self.info
            )
        frame = Frame(ts=now, health=self._health, targets=self.read_targets())
        frame.feed.extend(self._feed)
        self.on_frame(frame)
        deadline = started + self.period_s
        batch: list[FeedItem] = []
        batch_due = 0.0
        while not self._stop.is_set():
            now_m = time.monotonic()
            left = deadline - now_m
            if batch and (now_m >= batch_due or left <= 0):
                self.on_event(batch)  # events travel in batches: one repaint per batch
                batch = []
            if left <= 0:
                break
            wait = min(left, batch_due - now_m) if batch else left
            msg = self._pubsub.get_message(timeout=max(0.0, wait))
            if msg is not None and msg.get("type") == "message":
                item = self._on_message(msg["data"])
                if item is not None:
                    if not batch:
                        batch_due = time.monotonic() + self.batch_s
                    batch.append(item)

    def read_targets(self) -> dict[str, TargetRow]:
        """The targets, re-reading a quarter of their hashes (and counters) per call.

        A guarded process rewrites its hash once a second, so with four calls a
        second each hash is read about as often as it changes; the list of
        targets comes from a SCAN every fourth call. A hash that is gone drops
        its row at once.
        """
        assert self.client is not None and self.keys is not None
        keys = self.keys
        self._tick += 1
        if self._tick % READ_SPREAD == 1 or not self._names:
            prefix = keys.target("")
            found = self.client.scan_iter(match=keys.target_pattern, count=1000)
            self._names = sorted(_s(k)[len(prefix) :] for k in found)
            for gone in set(self._rows) - set(self._names):
                del self._rows[gone]
        names = [n for n in self._names if n not in self._rows]  # new: read now
        names += [
            n for n in self._names[self._tick % READ_SPREAD :: READ_SPREAD] if n in self._rows
        ]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.target(name))
            pipe.hgetall(keys.target_counters(name))
        replies = pipe.execute()
        for i, name in enumerate(names):
            h, c = pairs(replies[2 * i]), pairs(replies[2 * i + 1])
            if not h:  # expired or removed
                self._rows.pop(name, None)
                continue
            row = TargetRow.from_hash(name, h)
            row.counters = {k: _num(v) for k, v in c.items()}
            self._rows[name] = row
        for row in self._rows.values():
            row.decided = self._decided.get(row.name)
            row.acked = self._acked.get(row.name)
        return dict(self._rows)

    def _on_message(self, raw: bytes) -> FeedItem | None:
        try:
            msg = peek_message(raw)
        except MessageError:
            self.dropped += 1
            return None
        if isinstance(msg, Decision):
            item = feed_from_decision(msg)
            self._decided[item.target] = item
        elif isinstance(msg, Ack):
            item = feed_from_ack(msg)
            self._acked[item.target] = item
        else:
            self.dropped += 1
            return None
        self._feed.append(item)
        return item

    def _seed_feed(self) -> None:
        """The current session's latest decisions and acks, so the feed starts full."""
        assert self.client is not None and self.keys is not None
        sid = _s(self.client.hget(self.keys.swarm, "session_id") or "")
        if not sid:
            return
        raw = self.client.xrevrange(self.keys.session_events(sid), "+", "-", count=300)
        for ev in reversed(decode_events(raw)):
            item = _feed_from_event(ev)
            if item is None:
                continue
            self._feed.append(item)
            if item.kind == "decision":
                self._decided[item.target] = item
            elif item.kind == "ack":
                self._acked[item.target] = item

    def detail(self, name: str, *, scan: int = 3000, keep: int = 60) -> TargetDetail | None:
        """The detail view's data for ``name``; ``None`` with no swarm connected.

        The timeline is the target's events among the session's last ``scan``.
        """
        client, keys = self.client, self.keys
        if client is None or keys is None:
            return None
        out = TargetDetail(name=name)
        try:
            out.fields = pairs(client.hgetall(keys.target(name)))
            out.counters = pairs(client.hgetall(keys.target_counters(name)))
            sid = _s(client.hget(keys.swarm, "session_id") or "")
            if sid:
                raw = client.xrevrange(keys.session_events(sid), "+", "-", count=scan)
                for ev in decode_events(raw):
                    if ev.data.get("target") == name:
                        item = _feed_from_event(ev)
                        if item is not None:
                            out.timeline.append(item)
                        if len(out.timeline) >= keep:
                            break
                learned = decode_learned(pairs(client.hgetall(keys.session_learned(sid))))
                out.learned = {
                    k.split("|", 1)[1]: v for k, v in learned.items() if k.split("|", 1)[0] == name
                }
        except redis.RedisError:
            return out
        return out


def _num(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return 0.0
