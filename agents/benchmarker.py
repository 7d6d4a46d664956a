"""Memory benchmarking: before/after, hotspots, timeline, the seed's stress tests.

:class:`HiveMindMemoryBenchmarker` measures the *current process*; figures
are RSS (what the OS charges) unless named otherwise. Stress tests run real
workloads through this package's pools, cache and widget manager and check
them against the seed report's bounds:

* object creation: 100,000 pooled objects created and destroyed, residual
  RSS growth < 50 MB, success rate (objects neither lost nor leaked) >= 95 %;
* widget lifecycle: 1,000 widgets with state changes and renders, RSS growth
  after cleanup < 20 MB, cleanup efficiency (widgets actually freed) >= 98 %;
* memory pressure: 30 sustained cycles, peak RSS under the target, and
  stability (range of the later cycles < 100 MB, no growth trend).
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from hivemind.agents.gc_optimizer import DEFAULT_TARGET_MB, level_for
from hivemind.agents.memtools import MB, current_rss_bytes, malloc_trim
from hivemind.agents.periodic import PeriodicWorker
from hivemind.agents.pool import ObjectPool, PoolableWidgetState, live_pools
from hivemind.agents.widget_manager import ManagedWidget, WidgetMemoryManager

__all__ = [
    "HiveMindMemoryBenchmarker",
    "Hotspot",
    "MemorySnapshot",
    "StressResult",
    "run_hive_mind_memory_benchmark",
    "tui_render",
]


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """Process memory at one moment."""

    label: str
    at: float
    rss_mb: float
    gc_counts: tuple[int, int, int]
    tracked_objects: int
    traced_mb: float | None


@dataclass(frozen=True, slots=True)
class Hotspot:
    """One allocation site from ``tracemalloc`` (file:line)."""

    location: str
    size_kb: float
    count: int
    growth_kb: float


@dataclass(slots=True)
class StressResult:
    """One stress test: its figures, the bounds they are held to, the verdict."""

    name: str
    passed: bool
    metrics: dict[str, float | int | str] = field(default_factory=dict)
    bounds: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def tui_render(widget: ManagedWidget) -> list[str]:
    """A TUI-like render: a bordered box of text lines from the widget's state."""
    width = int(widget.props.props.get("width", 40))
    label = str(widget.props.props.get("label", widget.widget_type))
    body = [f"{k}: {v}"[: width - 4] for k, v in sorted(widget.state.values.items())]
    lines = ["+" + "-" * (width - 2) + "+", f"| {label:<{width - 4}} |"]
    lines += [f"| {row:<{width - 4}} |" for row in body]
    lines.append("+" + "-" * (width - 2) + "+")
    return lines


class _TrackedState(PoolableWidgetState):
    """PoolableWidgetState that counts live instances (for leak accounting)."""

    __slots__ = ()
    live: ClassVar[int] = 0
    made: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).live += 1
        type(self).made += 1

    def __del__(self) -> None:
        type(self).live -= 1


def _settle() -> float:
    """Collect, trim the heap, and return RSS in MB: a fair 'after' figure."""
    gc.collect()
    malloc_trim()
    return current_rss_bytes() / MB


class HiveMindMemoryBenchmarker:
    """Before/after comparisons, hotspots, timeline and stress tests.

    Nothing runs at construction. Every method measures this process, so
    run it where the workload runs (the swarm's BenchmarkerAgent runs it in
    a target on request).
    """

    def __init__(
        self,
        target_memory_mb: float = DEFAULT_TARGET_MB,
        *,
        rss_reader: Callable[[], float] | None = None,
    ) -> None:
        if not target_memory_mb > 0:
            raise ValueError(f"target_memory_mb must be > 0, got {target_memory_mb!r}")
        self.target_memory_mb = float(target_memory_mb)
        self._rss = rss_reader or (lambda: current_rss_bytes() / MB)
        self.timeline: deque[tuple[float, float]] = deque(maxlen=10_000)
        self._worker: PeriodicWorker | None = None
        self.snapshots: list[MemorySnapshot] = []

    # -- before / after --------------------------------------------------

    def take_snapshot(self, label: str = "") -> MemorySnapshot:
        """Record RSS, GC counters, tracked objects (and traced MB if tracing).

        Costs ``len(gc.get_objects())``: a few ms per million objects.
        """
        traced = tracemalloc.get_traced_memory()[0] / MB if tracemalloc.is_tracing() else None
        snap = MemorySnapshot(
            label=label,
            at=time.time(),
            rss_mb=self._rss(),
            gc_counts=gc.get_count(),
            tracked_objects=len(gc.get_objects()),
            traced_mb=traced,
        )
        self.snapshots.append(snap)
        del self.snapshots[:-100]
        return snap

    @staticmethod
    def compare(before: MemorySnapshot, after: MemorySnapshot) -> dict[str, Any]:
        """Differences between two snapshots (after minus before)."""
        return {
            "before": before.label,
            "after": after.label,
            "rss_before_mb": round(before.rss_mb, 2),
            "rss_after_mb": round(after.rss_mb, 2),
            "rss_delta_mb": round(after.rss_mb - before.rss_mb, 2),
            "rss_delta_pct": round(100.0 * (after.rss_mb - before.rss_mb) / before.rss_mb, 2)
            if before.rss_mb
            else 0.0,
            "tracked_objects_delta": after.tracked_objects - before.tracked_objects,
            "elapsed_s": round(after.at - before.at, 3),
        }

    def measure(self, fn: Callable[[], object], label: str = "workload") -> dict[str, Any]:
        """Snapshot, run ``fn``, snapshot again; returns :meth:`compare` of the two."""
        before = self.take_snapshot(f"before {label}")
        result = fn()
        after = self.take_snapshot(f"after {label}")
        del result
        return self.compare(before, after)

    # -- hotspots --------------------------------------------------------

    def identify_hotspots(
        self, workload: Callable[[], object] | None = None, top: int = 10
    ) -> dict[str, list[Hotspot]]:
        """Top allocation sites by size and by growth across ``workload``.

        Uses ``tracemalloc`` (started and stopped here unless already
        tracing), which slows allocation 2-4x while it runs. The workload's
        return value is kept alive until the second snapshot so what it
        built shows up as growth. Without a workload, a TUI-like widget
        workload is used.
        """
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        started_here = not tracemalloc.is_tracing()
        if started_here:
            tracemalloc.start(1)
        try:
            before = tracemalloc.take_snapshot()
            kept = (workload or self._hotspot_workload)()
            after = tracemalloc.take_snapshot()
            del kept
        finally:
            if started_here:
                tracemalloc.stop()
        # Hide tracemalloc's own bookkeeping, not the workload's sites.
        tm_file = tracemalloc.Filter(False, tracemalloc.__file__)
        before = before.filter_traces([tm_file])
        after = after.filter_traces([tm_file])
        by_size = [
            Hotspot(str(s.traceback), s.size / 1024, s.count, 0.0)
            for s in after.statistics("lineno")[:top]
        ]
        diffs = sorted(after.compare_to(before, "lineno"), key=lambda d: d.size_diff, reverse=True)
        by_growth = [
            Hotspot(str(d.traceback), d.size / 1024, d.count, d.size_diff / 1024)
            for d in diffs[:top]
            if d.size_diff > 0
        ]
        return {"by_size": by_size, "by_growth": by_growth}

    @staticmethod
    def _hotspot_workload() -> object:
        return [
            {
                "id": i,
                "state": {"value": i, "text": f"row {i}"},
                "lines": [f"line {j}" for j in range(8)],
            }
            for i in range(5000)
        ]

    # -- timeline --------------------------------------------------------

    def start_monitoring(self, interval_s: float = 0.5) -> bool:
        """Sample RSS into ``timeline`` every ``interval_s`` on a daemon thread.

        Returns False if already monitoring. Costs one RSS read per sample.
        """
        if self._worker is not None and self._worker.running:
            return False
        self._worker = PeriodicWorker(self._sample, interval_s, name="hivemind-timeline")
        return self._worker.start()

    def stop_monitoring(self) -> list[tuple[float, float]]:
        """Stop sampling; returns the timeline as (unix time, RSS MB) pairs."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        return list(self.timeline)

    def _sample(self) -> None:
        self.timeline.append((time.time(), self._rss()))

    # -- stress tests ----------------------------------------------------

    def stress_object_creation(self, n: int = 100_000, batch: int = 1000) -> StressResult:
        """Create and destroy ``n`` widget states through a pool (max 200)."""
        if n < 1 or batch < 1:
            raise ValueError(f"n and batch must be >= 1, got n={n}, batch={batch}")
        started = time.perf_counter()
        _TrackedState.live = _TrackedState.made = 0
        baseline = _settle()
        pool: ObjectPool[_TrackedState] = ObjectPool(_TrackedState, 200, name="stress_objects")
        errors = 0
        done = 0
        while done < n:
            size = min(batch, n - done)
            held = [pool.acquire() for _ in range(size)]
            for i, obj in enumerate(held):
                obj.update(index=done + i, text=f"object {done + i}", items=[i, i + 1, i + 2])
            for obj in held:
                try:
                    pool.release(obj)
                except Exception:
                    errors += 1
            del held, obj
            done += size
        residual = _settle() - baseline
        stats = pool.stats()
        leaked = max(0, _TrackedState.live - len(pool))
        success = 1.0 - (leaked + errors) / n
        passed = residual < 50.0 and success >= 0.95
        result = StressResult(
            "object_creation",
            passed,
            {
                "objects": n,
                "residual_mb": round(residual, 2),
                "success_rate": round(success, 4),
                "leaked": leaked,
                "created": stats.created,
                "reuse_rate": round(stats.reuse_rate, 4),
            },
            {"residual_mb": "< 50", "success_rate": ">= 0.95"},
            time.perf_counter() - started,
        )
        pool.trim()
        return result

    def stress_widget_lifecycle(self, n: int = 1000, state_changes: int = 10) -> StressResult:
        """``n`` managed widgets, each changed and rendered ``state_changes`` times."""
        if n < 1 or state_changes < 0:
            raise ValueError(f"need n >= 1 and state_changes >= 0, got {n}, {state_changes}")
        started = time.perf_counter()
        manager = WidgetMemoryManager(self.target_memory_mb)
        baseline = _settle()
        widgets = [manager.create_widget("label", label=f"w{i}", width=40) for i in range(n)]
        refs = [weakref.ref(w) for w in widgets]
        for step in range(state_changes):
            for i, w in enumerate(widgets):
                w.state.update(counter=step, text=f"item {i} step {step}")
                w.render(tui_render)
                w.render(tui_render)  # a second frame with no change: cache hit
        peak = current_rss_bytes() / MB - baseline
        for w in widgets:
            w.close()
        del widgets, w
        manager.close()
        growth = _settle() - baseline
        freed = sum(1 for r in refs if r() is None)
        efficiency = freed / n
        passed = growth < 20.0 and efficiency >= 0.98 and manager.live_widgets == 0
        return StressResult(
            "widget_lifecycle",
            passed,
            {
                "widgets": n,
                "state_changes": state_changes,
                "growth_mb": round(growth, 2),
                "peak_growth_mb": round(peak, 2),
                "cleanup_efficiency": round(efficiency, 4),
                "registry_left": manager.live_widgets,
            },
            {"growth_mb": "< 20", "cleanup_efficiency": ">= 0.98"},
            time.perf_counter() - started,
        )

    def stress_memory_pressure(
        self, cycles: int = 30, widgets_per_cycle: int = 500
    ) -> StressResult:
        """Sustained load: each cycle builds widgets with parent/child cycles, renders, frees."""
        if cycles < 2 or widgets_per_cycle < 1:
            raise ValueError(f"need cycles >= 2 and widgets_per_cycle >= 1, got {cycles}")
        started = time.perf_counter()
        manager = WidgetMemoryManager(self.target_memory_mb)
        samples: list[float] = []
        peak = 0.0
        for c in range(cycles):
            widgets = [
                manager.create_widget("row", label=f"{c}:{i}") for i in range(widgets_per_cycle)
            ]
            for i, w in enumerate(widgets):
                # Reference cycles (parent <-> child) like a real widget tree.
                parent = widgets[i // 2]
                parent.state.children.append(w)
                w.state.values["parent"] = parent
                w.state.update(payload="x" * 200, n=i)
                w.render(tui_render)
            peak = max(peak, current_rss_bytes() / MB)
            for w in widgets:
                w.close()
            del widgets
            gc.collect(0)
            samples.append(current_rss_bytes() / MB)
        manager.close()
        peak = max(peak, *samples)
        later = samples[len(samples) // 3 :]
        spread = max(later) - min(later)
        slope = _slope(later)
        stable = spread < 100.0 and slope < 1.0
        passed = peak < self.target_memory_mb and stable
        return StressResult(
            "memory_pressure",
            passed,
            {
                "cycles": cycles,
                "peak_mb": round(peak, 2),
                "target_mb": self.target_memory_mb,
                "spread_mb": round(spread, 2),
                "trend_mb_per_cycle": round(slope, 3),
                "stability": "STABLE" if stable else "UNSTABLE",
            },
            {
                "peak_mb": f"< {self.target_memory_mb:g}",
                "spread_mb": "< 100",
                "trend": "< 1 MB/cycle",
            },
            time.perf_counter() - started,
        )

    def run_stress_tests(self, *, scale: float = 1.0) -> list[StressResult]:
        """All three stress tests; ``scale`` < 1 shrinks them for a quick run."""
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be within (0, 1], got {scale}")
        return [
            self.stress_object_creation(max(1000, int(100_000 * scale))),
            self.stress_widget_lifecycle(max(100, int(1000 * scale))),
            self.stress_memory_pressure(30, max(50, int(500 * scale))),
        ]

    # -- verdicts --------------------------------------------------------

    def validate_target(self, rss_mb: float | None = None) -> dict[str, Any]:
        """Is the process under target, with how much headroom, at what level?"""
        rss = self._rss() if rss_mb is None else rss_mb
        headroom = self.target_memory_mb - rss
        return {
            "target_mb": self.target_memory_mb,
            "rss_mb": round(rss, 2),
            "under_target": rss <= self.target_memory_mb,
            "headroom_mb": round(headroom, 2),
            "headroom_pct": round(100.0 * headroom / self.target_memory_mb, 2),
            "level": level_for(rss, self.target_memory_mb),
        }

    def recommendations(self, validation: dict[str, Any], stress: list[StressResult]) -> list[str]:
        """Plain-language advice from a validation and stress results."""
        recs: list[str] = []
        level = validation["level"]
        if level == "emergency":
            recs.append(
                f"RSS {validation['rss_mb']:.0f} MB is over the {self.target_memory_mb:.0f} MB "
                "target: call emergency_optimize() and look at identify_hotspots()."
            )
        elif level in ("aggressive", "balanced"):
            recs.append(
                f"RSS is at the '{level}' level: start_adaptive_gc_monitoring() so GC tightens "
                "with pressure."
            )
        for r in stress:
            if r.passed:
                continue
            if r.name == "object_creation":
                recs.append(
                    "Object stress failed: objects leak or residual memory is high; "
                    "check pool reset hooks and references held after release."
                )
            elif r.name == "widget_lifecycle":
                recs.append(
                    "Widget lifecycle failed: widgets survive close(); look for strong "
                    "references (closures in render functions, global lists)."
                )
            else:
                recs.append(
                    "Memory pressure failed: memory grows across cycles; run "
                    "identify_hotspots() on one cycle to find the growing site."
                )
        for pool in live_pools():
            ps = pool.stats()
            if ps.acquired >= 100 and ps.reuse_rate < 0.5:
                recs.append(
                    f"Pool '{ps.name}' reuses {ps.reuse_rate:.0%} of acquisitions: raise "
                    "max_size toward the peak number of objects held at once, or drop "
                    "the pool if objects are cheap to build."
                )
        if not recs:
            recs.append(
                f"Within target with {validation['headroom_mb']:.0f} MB headroom and all stress "
                "tests passing: keep adaptive GC monitoring on in production."
            )
        return recs

    def run_full_benchmark(self, *, scale: float = 1.0) -> dict[str, Any]:
        """Before snapshot, hotspots, stress tests, after snapshot, verdicts."""
        started = time.perf_counter()
        before = self.take_snapshot("before")
        hotspots = self.identify_hotspots(top=5)
        stress = self.run_stress_tests(scale=scale)
        after = self.take_snapshot("after")
        validation = self.validate_target()
        return {
            "target_memory_mb": self.target_memory_mb,
            "comparison": self.compare(before, after),
            "hotspots": {k: [asdict(h) for h in v] for k, v in hotspots.items()},
            "stress_tests": [r.as_dict() for r in stress],
            "all_passed": all(r.passed for r in stress),
            "validation": validation,
            "recommendations": self.recommendations(validation, stress),
            "duration_s": round(time.perf_counter() - started, 2),
        }


def _slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against 0..n-1 (MB per cycle)."""
    if len(ys) < 2:
        return 0.0
    xs = list(range(len(ys)))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


async def run_hive_mind_memory_benchmark(
    target_gb: float = 1.5, *, scale: float = 1.0
) -> dict[str, Any]:
    """Seed API: the full benchmark, awaitable; returns a dict with ``recommendations``.

    Runs in a worker thread so the event loop stays responsive; takes a few
    seconds at ``scale=1``.
    """
    import asyncio  # deferred: keeps `import hivemind.agents` cheap

    if not target_gb > 0:
        raise ValueError(f"target_gb must be > 0, got {target_gb!r}")
    bench = HiveMindMemoryBenchmarker(float(target_gb) * 1024.0)
    return await asyncio.to_thread(bench.run_full_benchmark, scale=scale)
