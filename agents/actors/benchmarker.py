"""The benchmarker agent: turns guarded processes' samples into pressure events.

It subscribes to ``hm:{ns}:samples`` (sealed by each target with the
swarm's key: a sample that is not is dropped and counted) and classifies
each target with the seed's rule plus hysteresis
(:func:`hivemind.swarm.vocab.classify`). When a target changes level
it publishes a sealed :class:`PressureEvent` at once; while a target stays
at ``balanced`` or above it repeats the event every ``repeat_s`` so the
coordinator can escalate. Each event carries the reclaim action names the
target advertised in its sample, and its guard cost. Samples and events
are counted swarm-wide and per target (``hivemind_target_{samples,events}_total``).
Every ``series_every_s`` it adds each target's peak RSS, target and level
over that interval to the session's memory series
(``hm:{ns}:session:{id}:memory``, capped), which ``hivemind session plot`` draws.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from hivemind.swarm.agent.base import AgentCore, Role
from hivemind.swarm.keys import SAMPLE_SLOTS, parse_slots
from hivemind.swarm.messages import Level, MemorySample, PressureEvent
from hivemind.swarm.redis.bus import Subscription, publish
from hivemind.swarm.vocab import classify

__all__ = ["BenchmarkerCore"]


@dataclass(slots=True)
class _Target:
    level: Level
    last_event: float
    last_seen: float
    peak_rss: int = 0  # since the last memory-series entry
    peak_rank: int = 0
    target_bytes: int = 0


class BenchmarkerCore(AgentCore):
    """Samples in, pressure events out."""

    role: ClassVar[Role] = "benchmarker"
    repeat_s: ClassVar[float] = 0.2
    forget_after_s: ClassVar[float] = 10.0
    max_targets: ClassVar[int] = 10_000
    series_every_s: ClassVar[float] = 2.0
    series_budget: ClassVar[int] = 200_000  # target-points kept per session (~5 MB)

    def on_start(self) -> None:
        self.targets: dict[str, _Target] = {}
        self.samples_seen = 0
        self.events_sent = 0
        self._flushed = 0.0
        self._series_ts = 0.0
        self._counts: Counter[tuple[str, str]] = Counter()  # (target, field) not yet in Redis
        self.spawn("samples", self._samples_loop)

    def describe(self) -> dict[str, Any]:
        return {
            "targets": len(self.targets),
            "samples_seen": self.samples_seen,
            "events_sent": self.events_sent,
            "bus_errors": self.bus_errors(),
        }

    def on_sample(self, sample: MemorySample, now: float) -> PressureEvent | None:
        """Classify ``sample``; return the event to publish, if any (pure but for state)."""
        state = self.targets.get(sample.target)
        previous = state.level if state else Level.CONSERVATIVE
        level = classify(sample.rss_bytes, sample.target_bytes, previous)
        if state is None:
            if len(self.targets) >= self.max_targets:
                self._forget(now, 0.0)  # bounded: the quietest go first
            state = self.targets[sample.target] = _Target(previous, 0.0, now)
        state.last_seen = now
        state.peak_rss = max(state.peak_rss, sample.rss_bytes)
        state.target_bytes = sample.target_bytes
        changed = level is not previous
        repeat = level is not Level.CONSERVATIVE and now - state.last_event >= self.repeat_s
        state.level = level
        state.peak_rank = max(state.peak_rank, level.rank)
        if not (changed or repeat):
            return None
        state.last_event = now
        return PressureEvent(
            target=sample.target,
            level=level,
            previous=previous,
            rss_bytes=sample.rss_bytes,
            target_bytes=sample.target_bytes,
            sample_ts=sample.ts,
            reclaim_actions=sample.reclaim_actions,
            cost=sample.cost,
            holds=sample.holds,
        )

    def sample_channels(self) -> list[str]:
        """The sample channels this benchmarker reads: its slots from ``bench_slots``.

        Every slot when none is assigned (a single benchmarker); the slot-0
        owner also reads the old single ``samples`` channel.
        """
        slots = parse_slots(self.redis.hget(self.keys.bench_slots, self.name))
        slots = slots or list(range(SAMPLE_SLOTS))
        channels = [self.keys.sample_channel(s) for s in slots]
        return [*channels, self.keys.samples] if 0 in slots else channels

    def _samples_loop(self) -> None:
        """Read this benchmarker's slots; subscribe again when its slots are dealt anew."""
        while not self.stopping:
            channels = self.sample_channels()
            checked = [time.monotonic()]

            def moved(channels: list[str] = channels, checked: list[float] = checked) -> bool:
                if self.stopping:
                    return True
                if time.monotonic() - checked[0] < 1.0:
                    return False
                checked[0] = time.monotonic()
                return self.sample_channels() != channels

            self.sub = Subscription(
                self.redis,
                self.keys,
                channels,
                dict.fromkeys(channels, (MemorySample,)),
                key=self.secret or b"",
            )
            self.sub.run(self._on_message, moved, tick=self._tick)

    def _on_message(self, channel: str, sample: BaseModel) -> None:
        assert isinstance(sample, MemorySample)
        self.samples_seen += 1
        self._counts[(sample.target, "samples")] += 1
        event = self.on_sample(sample, time.monotonic())
        if event is not None:
            publish(self.redis, self.keys.events, event, self.secret)
            self.events_sent += 1
            self._counts[(sample.target, "events")] += 1

    def _forget(self, now: float, after_s: float) -> None:
        if after_s > 0:
            gone = [n for n, t in self.targets.items() if now - t.last_seen > after_s]
        else:
            gone = sorted(self.targets, key=lambda n: self.targets[n].last_seen)
            gone = gone[: max(1, len(gone) // 10)]
        for name in gone:
            del self.targets[name]

    def _tick(self) -> None:
        """Once a second: forget silent targets, add sample and event counts to Redis."""
        now = time.monotonic()
        if now - self._flushed < 1.0:
            return
        self._flushed = now
        self._forget(now, self.forget_after_s)
        if self._counts:
            counts, self._counts = self._counts, Counter()
            totals: Counter[str] = Counter()
            pipe = self.redis.pipeline(transaction=False)
            for (target, field), n in counts.items():
                totals[field] += n
                pipe.hincrby(self.keys.target_counters(target), field, n)
            for field, n in totals.items():
                pipe.hincrby(self.keys.counters, field, n)
            pipe.execute()
        if now - self._series_ts >= self.series_every_s:
            self._series_ts = now
            self.record_series()

    def record_series(self) -> int:
        """Add one memory-series entry to the current session; return targets in it.

        Each target's peak RSS and level since the last entry, and its
        target. The stream keeps ``series_budget`` target-points (at least
        600 entries), so it stays small however many targets there are.
        """
        points = {
            name: [round(t.peak_rss / 2**20, 1), round(t.target_bytes / 2**20, 1), t.peak_rank]
            for name, t in self.targets.items()
            if t.peak_rss
        }
        for t in self.targets.values():
            t.peak_rss, t.peak_rank = 0, t.level.rank
        if not points:
            return 0
        sid = self.redis.hget(self.keys.swarm, "session_id")
        if not sid:
            return 0
        session = sid.decode() if isinstance(sid, bytes) else str(sid)
        maxlen = max(600, self.series_budget // len(points))
        self.redis.xadd(
            self.keys.session_memory(session),
            {"ts": repr(time.time()), "data": json.dumps(points, separators=(",", ":"))},
            maxlen=maxlen,
            approximate=True,
        )
        return len(points)
