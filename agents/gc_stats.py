"""GC pause and frequency statistics gathered through ``gc.callbacks``.

CPython calls every function in ``gc.callbacks`` at the start and stop of
each collection. :class:`GCPauseRecorder` times the gap between the two
with ``time.perf_counter`` and keeps per-generation totals plus a bounded
window of recent pauses for percentiles. The callback costs about a
microsecond per collection, negligible next to the collection itself.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any

__all__ = ["GCPauseRecorder", "GCStatsSnapshot", "GenerationStats"]


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Totals for one GC generation since the recorder was installed/reset."""

    generation: int
    collections: int
    pause_ms_total: float
    pause_ms_max: float
    collected: int
    uncollectable: int


@dataclass(frozen=True, slots=True)
class GCStatsSnapshot:
    """Everything the recorder knows, frozen at one moment."""

    generations: tuple[GenerationStats, ...]
    window_s: float
    pause_ms_p50: float
    pause_ms_p99: float

    @property
    def collections(self) -> int:
        """Collections of every generation."""
        return sum(g.collections for g in self.generations)

    @property
    def pause_ms_total(self) -> float:
        """Total time spent inside the collector."""
        return sum(g.pause_ms_total for g in self.generations)

    @property
    def pause_ms_max(self) -> float:
        """Longest single pause."""
        return max((g.pause_ms_max for g in self.generations), default=0.0)

    @property
    def collected(self) -> int:
        """Objects the collector freed."""
        return sum(g.collected for g in self.generations)

    @property
    def collections_per_s(self) -> float:
        """Collection frequency over the recording window."""
        return self.collections / self.window_s if self.window_s > 0 else 0.0

    @property
    def collected_per_pause_ms(self) -> float:
        """Objects freed per millisecond of pause: one "GC efficiency" figure."""
        total = self.pause_ms_total
        return self.collected / total if total > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for reports."""
        return {
            "collections": self.collections,
            "collections_per_s": round(self.collections_per_s, 3),
            "pause_ms_total": round(self.pause_ms_total, 3),
            "pause_ms_max": round(self.pause_ms_max, 3),
            "pause_ms_p50": round(self.pause_ms_p50, 4),
            "pause_ms_p99": round(self.pause_ms_p99, 4),
            "collected": self.collected,
            "collected_per_pause_ms": round(self.collected_per_pause_ms, 1),
            "by_generation": [
                {
                    "generation": g.generation,
                    "collections": g.collections,
                    "pause_ms_total": round(g.pause_ms_total, 3),
                    "pause_ms_max": round(g.pause_ms_max, 3),
                    "collected": g.collected,
                    "uncollectable": g.uncollectable,
                }
                for g in self.generations
            ],
        }


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class GCPauseRecorder:
    """Times every collection through ``gc.callbacks``.

    ``install()``/``uninstall()`` are idempotent; the recorder also works as
    a context manager. ``window`` bounds the memory used for percentiles.
    """

    def __init__(self, window: int = 2048) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        # Preallocated C arrays, not lists of Python numbers: the callback
        # runs right after a collection freed memory, and every float or int
        # object it kept alive would land in a half-empty obmalloc arena and
        # pin it, so RSS could not drop after the collection (measured: a
        # deque of recent pauses kept ~40 MB of freed arenas resident).
        self._started_at = array("d", [0.0])
        self._counts = array("q", [0, 0, 0])
        self._pause = array("d", [0.0, 0.0, 0.0])
        self._max = array("d", [0.0, 0.0, 0.0])
        self._collected = array("q", [0, 0, 0])
        self._uncollectable = array("q", [0, 0, 0])
        self._recent = array("d", bytes(8 * window))
        self._recent_n = array("q", [0])
        self._window = window
        self._installed = False

    @property
    def installed(self) -> bool:
        """True while the callback is in ``gc.callbacks``."""
        return self._installed

    def install(self) -> None:
        """Start recording (no-op if already recording)."""
        with self._lock:
            if not self._installed:
                gc.callbacks.append(self._callback)
                self._installed = True

    def uninstall(self) -> None:
        """Stop recording (no-op if not recording); the totals stay."""
        with self._lock:
            if self._installed:
                with contextlib.suppress(ValueError):  # someone else removed it
                    gc.callbacks.remove(self._callback)
                self._installed = False

    def __enter__(self) -> GCPauseRecorder:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def reset(self) -> None:
        """Zero every total and restart the window clock."""
        with self._lock:
            self._t0 = time.monotonic()
            for arr in (self._counts, self._collected, self._uncollectable, self._recent_n):
                for i in range(len(arr)):
                    arr[i] = 0
            for farr in (self._pause, self._max):
                for i in range(3):
                    farr[i] = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collector with the GIL held: keep it tiny and
        # never take self._lock here (a collection can start while another
        # thread holds it, which would deadlock).
        if phase == "start":
            self._started_at[0] = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._started_at[0]) * 1000.0
        gen = info.get("generation", 2)
        if not 0 <= gen <= 2:
            return
        self._counts[gen] += 1
        self._pause[gen] += pause_ms
        if pause_ms > self._max[gen]:
            self._max[gen] = pause_ms
        self._collected[gen] += info.get("collected", 0)
        self._uncollectable[gen] += info.get("uncollectable", 0)
        n = self._recent_n[0]
        self._recent[n % self._window] = pause_ms
        self._recent_n[0] = n + 1

    def snapshot(self) -> GCStatsSnapshot:
        """Return the totals so far (costs a sort of the recent-pause window)."""
        with self._lock:
            gens = tuple(
                GenerationStats(
                    generation=g,
                    collections=self._counts[g],
                    pause_ms_total=self._pause[g],
                    pause_ms_max=self._max[g],
                    collected=self._collected[g],
                    uncollectable=self._uncollectable[g],
                )
                for g in range(3)
            )
            recent = sorted(self._recent[: min(self._recent_n[0], self._window)])
            window = time.monotonic() - self._t0
        return GCStatsSnapshot(
            generations=gens,
            window_s=window,
            pause_ms_p50=_percentile(recent, 0.5),
            pause_ms_p99=_percentile(recent, 0.99),
        )
