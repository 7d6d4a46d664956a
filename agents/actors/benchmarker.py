"""The benchmarker agent: turns guarded processes' samples into pressure events.

It subscribes to ``hm:{ns}:samples`` and classifies each target with the
seed's rule plus hysteresis (:func:`hivemind.swarm.vocab.classify`).
When a target changes level it publishes a :class:`PressureEvent` at once;
while a target stays at ``balanced`` or above it repeats the event every
``repeat_s`` so the coordinator can escalate. Each event carries the host's
available memory and ``/proc/pressure/memory`` (PSI ``some avg10``) where
the kernel has them, read at most once a second. Every ``series_every_s``
it adds each target's peak RSS, target and level over that interval to the
session's memory series (``hm:{ns}:session:{id}:memory``, capped), which
``hivemind session plot`` draws.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hivemind.swarm.agent.base import AgentCore, Role
from hivemind.swarm.messages import Level, MemorySample, PressureEvent
from hivemind.swarm.redis.bus import Subscription, publish
from hivemind.swarm.vocab import classify

__all__ = ["BenchmarkerCore", "HostReading", "read_host"]

_PSI = Path("/proc/pressure/memory")
_MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True, slots=True)
class HostReading:
    available_bytes: int | None
    psi_some_avg10: float | None


def read_host() -> HostReading:
    """MemAvailable and PSI ``some avg10`` for the host, ``None`` where absent."""
    available = None
    psi = None
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        first = _PSI.read_text().splitlines()[0]  # "some avg10=0.00 avg60=..."
        psi = float(first.split()[1].split("=")[1])
    except (OSError, ValueError, IndexError):
        pass
    return HostReading(available, psi)


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
    series_every_s: ClassVar[float] = 2.0
    series_budget: ClassVar[int] = 200_000  # target-points kept per session (~5 MB)

    def on_start(self) -> None:
        self.targets: dict[str, _Target] = {}
        self.samples_seen = 0
        self.events_sent = 0
        self._host = read_host()
        self._host_ts = time.monotonic()
        self._flushed = 0.0
        self._series_ts = 0.0
        self._samples_counted = 0
        self._events_counted = 0
        self._sub: Subscription | None = None
        self.spawn("samples", self._loop)

    def describe(self) -> dict[str, Any]:
        return {
            "targets": len(self.targets),
            "samples_seen": self.samples_seen,
            "events_sent": self.events_sent,
            "bus_errors": dict(self._sub.errors) if self._sub else {},
        }

    def host(self) -> HostReading:
        now = time.monotonic()
        if now - self._host_ts >= 1.0:
            self._host, self._host_ts = read_host(), now
        return self._host

    def on_sample(self, sample: MemorySample, now: float) -> PressureEvent | None:
        """Classify ``sample``; return the event to publish, if any (pure but for state)."""
        state = self.targets.get(sample.target)
        previous = state.level if state else Level.CONSERVATIVE
        level = classify(sample.rss_bytes, sample.target_bytes, previous)
        if state is None:
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
        host = self.host()
        return PressureEvent(
            target=sample.target,
            level=level,
            previous=previous,
            rss_bytes=sample.rss_bytes,
            target_bytes=sample.target_bytes,
            sample_ts=sample.ts,
            seq=sample.seq,
            host_available_bytes=host.available_bytes,
            psi_some_avg10=host.psi_some_avg10,
            reclaim_actions=sample.reclaim_actions,
            cost=sample.cost,
        )

    def _loop(self) -> None:
        sub = Subscription(self.redis, self.keys, [self.keys.samples], expect=(MemorySample,))
        self._sub = sub
        try:
            while not self.stopping:
                got = sub.get(timeout_s=0.5)
                now = time.monotonic()
                if got is not None:
                    sample = got[1]
                    assert isinstance(sample, MemorySample)
                    self.samples_seen += 1
                    event = self.on_sample(sample, now)
                    if event is not None:
                        publish(self.redis, self.keys.events, event)
                        self.events_sent += 1
                self._housekeeping(now)
        finally:
            sub.close()

    def _housekeeping(self, now: float) -> None:
        """Once a second: forget silent targets, add sample counts to Redis."""
        if now - self._flushed < 1.0:
            return
        self._flushed = now
        for name in [n for n, t in self.targets.items() if now - t.last_seen > self.forget_after_s]:
            del self.targets[name]
        delta = self.samples_seen - self._samples_counted
        if delta:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.keys.counters, "samples", delta)
            pipe.hincrby(self.keys.counters, "events", self.events_sent - self._events_counted)
            pipe.execute()
            self._samples_counted, self._events_counted = self.samples_seen, self.events_sent
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
