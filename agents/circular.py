"""Find and free reference cycles that only the cycle itself keeps alive.

The seed report's detector "breaks references in frames and tracebacks and
clears large dictionaries with self-references". Clearing a dict that user
code can still reach would corrupt the application, so this detector works
only on what the cyclic collector has *proved* unreachable:

1. Switch on ``gc.DEBUG_SAVEALL`` and run a full collection. CPython then
   appends every object it found unreachable to ``gc.garbage`` instead of
   freeing it. Nothing reachable from user code can be on that list.
2. Inspect that list (count, types, a size estimate, how many objects are
   frames/tracebacks/exceptions: the classic ``except ... as e`` cycles).
3. Remove exactly the entries step 1 added from ``gc.garbage``, restore the
   debug flags, and collect again, which frees them.

So "breaking" is done by the collector itself and no live object is ever
touched. Cost: two full collections (tens of ms on a large heap), all
other threads' allocations pause while a collection runs, as usual.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass, field, replace

__all__ = ["CircularReferenceDetector", "CycleReport"]

_FRAME_LIKE: tuple[type, ...] = (types.FrameType, types.TracebackType, BaseException)

# DEBUG_SAVEALL is process-wide: two detectors running at once would steal
# each other's garbage. One lock for the whole process.
_SCAN_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one scan found unreachable and freed."""

    objects: int
    """Objects the collector proved unreachable (all freed afterwards)."""
    bytes_estimate: int
    """Sum of ``sys.getsizeof`` over those objects (shallow, an estimate)."""
    frames_and_tracebacks: int
    """Of those, frames, tracebacks and exceptions (exception-held cycles)."""
    large_dicts: int
    """Of those, dicts with at least ``large_dict_len`` entries."""
    by_type: dict[str, int] = field(default_factory=dict)
    """The most common type names and their counts."""
    duration_ms: float = 0.0
    """Wall time of the scan, both collections included."""

    def as_dict(self) -> dict[str, object]:
        """Plain-data form for reports and wire messages."""
        return {
            "objects": self.objects,
            "bytes_estimate": self.bytes_estimate,
            "frames_and_tracebacks": self.frames_and_tracebacks,
            "large_dicts": self.large_dicts,
            "by_type": dict(self.by_type),
            "duration_ms": round(self.duration_ms, 3),
        }


class CircularReferenceDetector:
    """Report and free unreachable reference cycles (see the module docstring).

    ``scan()`` returns a :class:`CycleReport`; ``detect_and_break()`` is the
    seed report's spelling and returns only the object count. Totals over
    every scan are kept in ``total_objects`` and ``total_bytes``.
    """

    def __init__(self, *, top_types: int = 10, large_dict_len: int = 1000) -> None:
        if top_types < 0:
            raise ValueError(f"top_types must be >= 0, got {top_types}")
        if large_dict_len < 1:
            raise ValueError(f"large_dict_len must be >= 1, got {large_dict_len}")
        self.top_types = top_types
        self.large_dict_len = large_dict_len
        self.scans = 0
        self.total_objects = 0
        self.total_bytes = 0
        self.last_report: CycleReport | None = None

    def scan(self) -> CycleReport:
        """Collect with ``DEBUG_SAVEALL``, describe the garbage, then free it."""
        started = time.perf_counter()
        with _SCAN_LOCK:
            old_flags = gc.get_debug()
            start_len = len(gc.garbage)
            gc.set_debug(old_flags | gc.DEBUG_SAVEALL)
            try:
                gc.collect()
            finally:
                gc.set_debug(old_flags)
            found = gc.garbage[start_len:]
            # Take back only what this scan added; anything the application
            # put on gc.garbage itself stays.
            del gc.garbage[start_len:]
            report = self._describe(found)
            found.clear()
            del found
            # The objects are now referenced by nothing: this frees them.
            gc.collect()
        report = replace(report, duration_ms=(time.perf_counter() - started) * 1000.0)
        self.scans += 1
        self.total_objects += report.objects
        self.total_bytes += report.bytes_estimate
        self.last_report = report
        return report

    def detect_and_break(self) -> int:
        """Seed-report API: scan, free, and return how many objects were freed."""
        return self.scan().objects

    def _describe(self, found: list[object]) -> CycleReport:
        counts: Counter[str] = Counter()
        size = 0
        frames = 0
        large = 0
        for obj in found:
            tp = type(obj)
            counts[tp.__qualname__] += 1
            with contextlib.suppress(Exception):  # a broken __sizeof__ must not stop the scan
                size += sys.getsizeof(obj)
            if isinstance(obj, _FRAME_LIKE):
                frames += 1
            elif tp is dict and len(obj) >= self.large_dict_len:  # type: ignore[arg-type]
                large += 1
        return CycleReport(
            objects=len(found),
            bytes_estimate=size,
            frames_and_tracebacks=frames,
            large_dicts=large,
            by_type=dict(counts.most_common(self.top_types)),
        )
