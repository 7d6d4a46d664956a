"""What guarding costs the app, measured inside the guarded process.

:class:`CostMeter` hooks ``gc.callbacks`` (one small callback per
collection, ~1 µs) and keeps: the time spent inside the collector, the
pause of each collection (a ring of the last 1,024), how many unreachable
objects collections found, and which of those collections the guard ran
itself; ``on_app_full`` is called as a full collection the app runs itself
starts. The runtime thread calls :meth:`CostMeter.tick` about once a
second; :meth:`CostMeter.snapshot` then gives the figures that samples
carry: collector milliseconds per second of wall time, pause p50/p99, the
runtime thread's own CPU (``time.thread_time``) as a share of one core.

:class:`EffectTracker` measures what one action did: bytes freed (RSS
before minus after) and the app's collector time per second in the
``window_s`` before and after it.

Pure standard library; nothing here raises into the app (the callback
swallows everything).
"""

from __future__ import annotations

import gc
import time
from collections import deque

from hivemind.swarm.record import frozen

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CostMeter", "CostSnapshot", "Effect", "EffectTracker", "percentile"]

PAUSES_KEPT = 1024


def percentile(sorted_xs: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of an already sorted list by nearest rank; 0.0 when empty."""
    if not sorted_xs:
        return 0.0
    i = min(len(sorted_xs) - 1, max(0, int(q * (len(sorted_xs) - 1) + 0.5)))
    return sorted_xs[i]


@frozen
class CostSnapshot:
    """The guard's cost figures over the last window (see :meth:`CostMeter.snapshot`)."""

    gc_ms_per_s: float  # the app's own collections: collector time per second of wall time
    pause_p50_ms: float  # over the last PAUSES_KEPT collections
    pause_p99_ms: float
    guard_cpu_pct: float  # the runtime thread's CPU, % of one core
    collections: int  # collections in the window (the app's and the guard's)
    guard_gc_ms_per_s: float  # the guard's explicit collections (also in guard_cpu_pct)
    collected: int  # unreachable objects those collections found
    pauses: int  # pauses behind the percentiles

    def as_wire(self) -> dict[str, float | int]:
        """The fields a sample carries (rounded; JSON-ready)."""
        return {
            "gc_ms_per_s": round(self.gc_ms_per_s, 3),
            "pause_p50_ms": round(self.pause_p50_ms, 3),
            "pause_p99_ms": round(self.pause_p99_ms, 3),
            "guard_cpu_pct": round(self.guard_cpu_pct, 3),
        }


class CostMeter:
    """Time in the collector, collection pauses, and the runtime's own CPU.

    :meth:`start` installs the ``gc.callbacks`` hook, :meth:`stop` removes
    it. :meth:`ours` marks the collections the guard runs itself (so the
    caller can tell them apart from the app's). Counters are plain ints
    and floats updated under the GIL; only the runtime thread reads them.
    """

    def __init__(self, clock: Any = time.perf_counter) -> None:
        self._clock = clock
        self._t_start = 0.0
        self._in_ours = False
        self.total_s = 0.0  # every collection since start
        self.ours_s = 0.0  # the guard's own explicit collections
        self.count = 0
        self.collected = 0
        self.pauses: deque[float] = deque(maxlen=PAUSES_KEPT)
        self._installed = False
        # Called (no arguments) as a full collection the app runs itself starts: the
        # runtime's Freezer thaws there, so that collection walks everything.
        self.on_app_full: Callable[[], None] | None = None
        # window state for snapshot()
        self._w_wall = time.monotonic()
        self._w_total = 0.0
        self._w_count = 0
        self._w_collected = 0
        self._w_cpu = time.thread_time()
        self._w_extra = 0.0
        self._w_ours = 0.0
        self._last = CostSnapshot(0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0)

    # --- the hook ------------------------------------------------------------
    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        try:
            if phase == "start":
                self._t_start = self._clock()
                hook = self.on_app_full
                if hook is not None and not self._in_ours and info.get("generation") == 2:
                    hook()
            elif self._t_start:
                dt = self._clock() - self._t_start
                self._t_start = 0.0
                self.total_s += dt
                if self._in_ours:
                    self.ours_s += dt
                self.count += 1
                self.collected += int(info.get("collected", 0))
                self.pauses.append(dt * 1000.0)
        except Exception:  # a collector callback must never raise
            return

    def start(self) -> CostMeter:
        """Install the ``gc.callbacks`` hook (idempotent); returns self."""
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def stop(self) -> None:
        """Remove the hook (idempotent)."""
        if self._installed:
            if self._callback in gc.callbacks:
                gc.callbacks.remove(self._callback)
            self._installed = False

    @property
    def installed(self) -> bool:
        return self._installed

    def ours(self, running: bool) -> None:
        """Mark the start (True) and end (False) of a collection the guard runs itself."""
        self._in_ours = running

    # --- reading ---------------------------------------------------------------
    def tick(self, extra_cpu_s: float = 0.0) -> CostSnapshot:
        """Close the current window (call from the runtime thread, ~once a second).

        ``extra_cpu_s``: CPU seconds used so far by helpers that work for the guard
        outside this thread (the watcher process); what they used in the window
        counts in ``guard_cpu_pct``. A helper gone (the total fell) counts nothing.
        """
        now = time.monotonic()
        cpu = time.thread_time()
        extra = max(0.0, extra_cpu_s - self._w_extra)
        self._w_extra = extra_cpu_s
        wall = max(1e-6, now - self._w_wall)
        total, ours, count, collected = self.total_s, self.ours_s, self.count, self.collected
        pauses = sorted(self.pauses)
        app = (total - ours) - (self._w_total - self._w_ours)
        self._last = CostSnapshot(
            gc_ms_per_s=app * 1000.0 / wall,
            pause_p50_ms=percentile(pauses, 0.50),
            pause_p99_ms=percentile(pauses, 0.99),
            guard_cpu_pct=(max(0.0, cpu - self._w_cpu) + extra) * 100.0 / wall,
            collections=count - self._w_count,
            guard_gc_ms_per_s=(ours - self._w_ours) * 1000.0 / wall,
            collected=collected - self._w_collected,
            pauses=len(pauses),
        )
        self._w_wall, self._w_cpu = now, cpu
        self._w_total, self._w_ours = total, ours
        self._w_count, self._w_collected = count, collected
        return self._last

    def snapshot(self) -> CostSnapshot:
        """The figures of the last closed window (cheap; no sorting)."""
        return self._last

    def gc_seconds(self) -> float:
        """Seconds the app spent inside its own collections since :meth:`start` (monotone)."""
        return self.total_s - self.ours_s


@frozen
class Effect:
    """What one action did: bytes freed and the app's collector time around it."""

    name: str
    bytes_freed: int
    duration_ms: float
    gc_ms_per_s_before: float
    gc_ms_per_s_after: float


class EffectTracker:
    """Follows one action at a time through ``window_s`` after it.

    :meth:`begin` when the action ran (with what it freed), :meth:`poll`
    from the runtime loop; ``poll`` returns the finished :class:`Effect`
    once the window after has passed (or early, when another action begins).
    """

    def __init__(self, meter: CostMeter, window_s: float = 2.0) -> None:
        self.meter = meter
        self.window_s = window_s
        self._history: deque[tuple[float, float]] = deque(maxlen=64)  # (t, gc seconds)
        self._pending: tuple[str, int, float, float, float, float, Any] | None = None

    def observe(self, now: float) -> None:
        """Record the meter's running total (call at each sample)."""
        self._history.append((now, self.meter.gc_seconds()))

    def _rate_since(self, t0: float, now: float) -> float:
        past = [(t, g) for t, g in self._history if t >= t0]
        if not past:
            return 0.0
        t, g = past[0]
        return (self.meter.gc_seconds() - g) * 1000.0 / max(1e-3, now - t)

    def begin(
        self, name: str, bytes_freed: int, duration_ms: float, now: float, tag: Any = None
    ) -> Effect | None:
        """Start following an action; returns the previous one's (shortened) effect, if any."""
        previous = self.finish(now) if self._pending is not None else None
        before = self._rate_since(now - self.window_s, now)
        self._pending = (name, bytes_freed, duration_ms, before, now, self.meter.gc_seconds(), tag)
        return previous

    def finish(self, now: float) -> Effect | None:
        """End the pending action's window now; its effect, or ``None`` if none is pending."""
        if self._pending is None:
            return None
        name, freed, ms, before, t0, g0, _tag = self._pending
        self._pending = None
        after = (self.meter.gc_seconds() - g0) * 1000.0 / max(1e-3, now - t0)
        return Effect(name, freed, ms, before, after)

    @property
    def pending_tag(self) -> Any:
        """The ``tag`` given to :meth:`begin` for the action being followed (or ``None``)."""
        return self._pending[6] if self._pending is not None else None

    def poll(self, now: float) -> Effect | None:
        """The pending action's effect once its window after has passed, else ``None``."""
        if self._pending is not None and now - self._pending[4] >= self.window_s:
            return self.finish(now)
        return None
