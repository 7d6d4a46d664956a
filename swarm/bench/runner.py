"""``hivemind bench``: the seed report's figures, measured side by side on this machine.

Phases (each comparison runs both sides in the same run, alternating which
goes first, over several repeats; figures are median and min-max spread):

* ``stress``: the report's three stress tests (fresh interpreter per repeat);
* ``widgets``: widget creation pooled vs unpooled, pool reuse and render-cache
  hit rate on TUI-like workloads;
* ``gc``: each seed GC profile vs CPython's default thresholds;
* ``memory``: peak and residual RSS of a widget-tree workload with vs without
  the adaptive optimizers;
* ``workload``: the chosen workload unguarded vs guarded by the in-process
  library (no swarm), each run in a child interpreter;
* ``swarm``: the chosen workload unguarded vs guarded by the swarm loop
  (``hivemind.swarm.bench.effect.run_effect``), when this build has it.

:func:`run_bench` returns a :class:`BenchResults`; the files (``results.json``,
``report.md``, PNG charts) are written by :mod:`hivemind.swarm.bench.report`.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hivemind.swarm.errors import HivemindError, UsageError

if TYPE_CHECKING:
    from hivemind.swarm.bench.corpus import CorpusApp, Plan

__all__ = [
    "PHASES",
    "SWARM_NOT_AVAILABLE",
    "BenchOptions",
    "BenchResults",
    "RunLike",
    "run_bench",
    "summarize_sides",
]

PHASES: tuple[str, ...] = ("corpus", "stress", "widgets", "gc", "memory", "workload", "swarm")
SWARM_NOT_AVAILABLE = "swarm loop: not available in this build"


class RunLike(Protocol):
    """One side of one repeat of a guarded-vs-unguarded run (``EffectRun`` fits)."""

    @property
    def side(self) -> str: ...
    @property
    def peak_rss_mb(self) -> float: ...
    @property
    def time_over_target_s(self) -> float: ...
    @property
    def units(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def timeline(self) -> list[tuple[float, float]]: ...
    @property
    def decisions(self) -> list[tuple[float, str, str, int]]: ...
    @property
    def latencies_ms(self) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run. ``repeats``, ``seconds`` and ``phases`` override the presets (tests)."""

    target_mb: float = 256.0
    quick: bool = False
    workload: str = "demo"
    out: Path = Path("bench-out")
    repeats: int | None = None
    seconds: float | None = None
    phases: tuple[str, ...] = PHASES
    corpus: tuple[str, ...] | None = None  # corpus apps to run (None: all)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_mb) and self.target_mb > 0):
            raise UsageError(f"--target-mb must be a number > 0, got {self.target_mb!r}")
        if self.repeats is not None and self.repeats < 1:
            raise UsageError(f"--repeats must be >= 1, got {self.repeats}")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"--seconds must be > 0, got {self.seconds}")
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown or not self.phases:
            raise UsageError(f"--phases: unknown {unknown or 'empty'}; choose from {PHASES}")
        if self.corpus is not None:
            from hivemind.swarm.bench.corpus import CORPUS

            names = [a.name for a in CORPUS]
            bad = [c for c in self.corpus if c not in names]
            if bad or not self.corpus:
                raise UsageError(f"--corpus: unknown {bad or 'empty'}; choose from {names}")

    def command(self) -> str:
        """The command line that reproduces this run."""
        parts = ["hivemind", "bench", "--target-mb", f"{self.target_mb:g}"]
        if self.quick:
            parts.append("--quick")
        parts += ["--workload", self.workload]
        if self.repeats is not None:
            parts += ["--repeats", str(self.repeats)]
        if self.seconds is not None:
            parts += ["--seconds", f"{self.seconds:g}"]
        if tuple(self.phases) != PHASES:
            parts += ["--phases", ",".join(self.phases)]
        if self.corpus is not None:
            parts += ["--corpus", ",".join(self.corpus)]
        return shlex.join(parts)


@dataclass(frozen=True, slots=True)
class _Preset:
    widget_n: int
    widget_repeats: int
    frames: int
    gc_repeats: int
    gc_scale: float
    memory_repeats: int
    memory_scale: float
    stress_repeats: int
    workload_repeats: int
    workload_seconds: float


QUICK = _Preset(1000, 5, 300, 2, 0.25, 2, 0.25, 1, 2, 5.0)
FULL = _Preset(5000, 9, 1800, 3, 1.0, 5, 1.0, 3, 3, 15.0)


@dataclass(slots=True)
class BenchResults:
    """Everything one bench run measured; plain data, JSON-ready via :meth:`as_dict`."""

    command: str
    options: dict[str, Any]
    machine: dict[str, Any]
    started_at: str
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    charts: list[str] = field(default_factory=list)
    charts_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def errors(self) -> dict[str, str]:
        """Phase name -> error message, for phases that failed."""
        return {
            name: str(p.get("error"))
            for name, p in self.phases.items()
            if p.get("status") == "error"
        }


# -- summaries -------------------------------------------------------------------


def _spread(values: Sequence[float]) -> dict[str, float]:
    from hivemind.swarm.bench.measure import spread

    return spread(values) if values else {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}


def summarize_sides(runs: Sequence[RunLike]) -> dict[str, Any]:
    """Per side: peak, time over target, throughput (median/min/max), decisions, latencies."""
    sides: dict[str, list[RunLike]] = {}
    for r in runs:
        sides.setdefault(r.side, []).append(r)
    out: dict[str, Any] = {}
    for side, rs in sides.items():
        out[side] = {
            "repeats": len(rs),
            "peak_rss_mb": _spread([r.peak_rss_mb for r in rs]),
            "time_over_target_s": _spread([r.time_over_target_s for r in rs]),
            "units_per_s": _spread([r.units / r.duration_s if r.duration_s else 0.0 for r in rs]),
            "decisions": _spread([float(len(r.decisions)) for r in rs]),
            "bytes_freed": _spread([float(sum(d[3] for d in r.decisions)) for r in rs]),
            "latency_ms": _spread([x for r in rs for x in r.latencies_ms]),
        }
    return out


def _run_record(r: RunLike) -> dict[str, Any]:
    return {
        "side": r.side,
        "peak_rss_mb": r.peak_rss_mb,
        "time_over_target_s": r.time_over_target_s,
        "units": r.units,
        "duration_s": r.duration_s,
        "timeline": [list(p) for p in r.timeline],
        "decisions": [list(d) for d in r.decisions],
        "latencies_ms": list(r.latencies_ms),
    }


# -- phases ----------------------------------------------------------------------

Tick = Callable[[], None]


def _corpus_plan(o: BenchOptions) -> Plan:
    from dataclasses import replace

    from hivemind.swarm.bench.corpus import FULL, QUICK

    plan = QUICK if o.quick else FULL
    if o.seconds is not None:
        plan = replace(plan, seconds=o.seconds)
    if o.repeats is not None:
        plan = replace(plan, repeats=o.repeats)
    if o.corpus is not None:
        plan = replace(plan, skip=tuple(n for n in plan.skip if n not in o.corpus))
    return plan


def _corpus_apps(o: BenchOptions) -> tuple[CorpusApp, ...]:
    from hivemind.swarm.bench.corpus import CORPUS

    return tuple(a for a in CORPUS if o.corpus is None or a.name in o.corpus)


def _phase_corpus(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.swarm.bench.corpus import corpus_phase

    return corpus_phase(_corpus_plan(o), apps=_corpus_apps(o), tick=lambda _s: tick())


def _phase_stress(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.swarm.bench.measure import stress_runs

    repeats = o.repeats or p.stress_repeats
    runs = stress_runs(o.target_mb, repeats, 1.0, tick)
    tests: dict[str, Any] = {}
    for name in ("object_creation", "widget_lifecycle", "memory_pressure"):
        rs = [t for run in runs for t in run if t["name"] == name]
        metrics: dict[str, Any] = {}
        for key, value in rs[0]["metrics"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[key] = _spread([float(r["metrics"][key]) for r in rs])
            else:
                metrics[key] = [r["metrics"][key] for r in rs]
        tests[name] = {
            "passed": all(r["passed"] for r in rs),
            "passed_repeats": sum(bool(r["passed"]) for r in rs),
            "metrics": metrics,
            "bounds": rs[0]["bounds"],
        }
    return {"repeats": repeats, "scale": 1.0, "tests": tests}


def _phase_widgets(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.swarm.bench.measure import reuse_and_cache, widget_creation_runs

    n, repeats = p.widget_n, o.repeats or p.widget_repeats
    res = widget_creation_runs(n, repeats)
    tick()
    creation = {side: _spread([v * 1000 / n for v in vs]) for side, vs in res.items()}
    reuse = [asdict(r) for r in reuse_and_cache(p.frames)]
    tick()
    return {
        "widgets_per_run": n,
        "repeats": repeats,
        "creation_ms_per_1000": creation,
        "frames": p.frames,
        "reuse": reuse,
    }


def _phase_gc(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.agents.gc_optimizer import GC_PROFILES
    from hivemind.swarm.bench.measure import GC_MODES, gc_profile_runs

    repeats = o.repeats or p.gc_repeats
    res = gc_profile_runs(repeats, p.gc_scale, tick)
    import gc

    modes: dict[str, Any] = {}
    for m in GC_MODES:
        rs = res[m]
        modes[m] = {
            "thresholds": list(gc.get_threshold() if m == "default" else GC_PROFILES[m].thresholds),
            **{k: _spread([float(r[k]) for r in rs]) for k in rs[0]},
        }
    base = modes["default"]["per_ms"]["median"]
    for m in GC_MODES:
        modes[m]["efficiency_vs_default"] = modes[m]["per_ms"]["median"] / base if base else 0.0
    best = max(GC_PROFILES, key=lambda m: modes[m]["efficiency_vs_default"])
    return {
        "repeats": repeats,
        "scale": p.gc_scale,
        "efficiency": "objects freed per ms of GC pause",
        "modes": modes,
        "best_profile": best,
    }


def _phase_memory(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.swarm.bench.measure import memory_runs

    repeats = o.repeats or p.memory_repeats
    res = memory_runs(repeats, p.memory_scale, tick)
    return {
        "repeats": repeats,
        "scale": p.memory_scale,
        "sides": {
            side: {k: _spread([float(r[k]) for r in rs]) for k in rs[0]} for side, rs in res.items()
        },
    }


def _phase_workload(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    from hivemind.swarm.bench.workloads import WorkloadRun, run_workload_process

    repeats = o.repeats or p.workload_repeats
    seconds = o.seconds or p.workload_seconds
    runs: list[WorkloadRun] = []
    for r in range(repeats):
        for guard in ("none", "library") if r % 2 == 0 else ("library", "none"):
            run = run_workload_process(o.workload, seconds, o.target_mb, guard)
            tick()
            if run.error:
                return {
                    "status": "error",
                    "error": f"{run.side} run {r + 1}: {run.error}",
                    "workload": o.workload,
                }
            runs.append(run)
    return {
        "workload": o.workload,
        "guard": "in-process library guard (no swarm): GC profiles by level, "
        "emergency_optimize above 90 % of the target, at most once a second",
        "repeats": repeats,
        "seconds": seconds,
        "start_rss_mb": _spread([r.start_rss_mb for r in runs]),
        "sides": summarize_sides(runs),
        "runs": [_run_record(r) for r in runs],
    }


def _phase_swarm(o: BenchOptions, p: _Preset, tick: Tick) -> dict[str, Any]:
    try:
        from hivemind.swarm.bench.effect import run_effect  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        reason = SWARM_NOT_AVAILABLE
        if getattr(exc, "name", None) != "hivemind.swarm.bench.effect":
            reason += f" ({exc})"
        return {"status": "not_available", "reason": reason}
    repeats = o.repeats or p.workload_repeats
    seconds = o.seconds or p.workload_seconds
    runs: Sequence[RunLike] = run_effect(o.workload, o.target_mb, seconds, repeats)
    tick()
    return swarm_phase_from_runs(o.workload, repeats, seconds, runs)


def swarm_phase_from_runs(
    workload: str, repeats: int, seconds: float, runs: Sequence[RunLike]
) -> dict[str, Any]:
    """The ``swarm`` phase's record for ``run_effect``'s runs."""
    return {
        "workload": workload,
        "guard": "swarm loop (runtime -> Redis -> agents -> signed commands)",
        "repeats": repeats,
        "seconds": seconds,
        "sides": summarize_sides(runs),
        "runs": [_run_record(r) for r in runs],
    }


_PHASES: dict[str, tuple[str, Callable[[BenchOptions, _Preset, Tick], dict[str, Any]]]] = {
    "corpus": ("corpus apps vs unguarded, watchdog, hivemind", _phase_corpus),
    "stress": ("stress tests (report's three)", _phase_stress),
    "widgets": ("widget creation pooled vs unpooled, reuse, cache", _phase_widgets),
    "gc": ("GC profiles vs CPython defaults", _phase_gc),
    "memory": ("peak/residual memory with vs without optimizers", _phase_memory),
    "workload": ("workload unguarded vs in-process guard", _phase_workload),
    "swarm": ("swarm loop guarded vs unguarded", _phase_swarm),
}


def _steps(name: str, o: BenchOptions, p: _Preset) -> int | None:
    from hivemind.agents.gc_optimizer import GC_PROFILES
    from hivemind.swarm.bench.corpus import sides_for

    r = o.repeats
    plan = _corpus_plan(o)
    corpus_runs = plan.repeats * sum(
        len(sides_for(a)) for a in _corpus_apps(o) if a.name not in plan.skip
    )
    return {
        "corpus": corpus_runs,
        "stress": r or p.stress_repeats,
        "widgets": 2,
        "gc": (r or p.gc_repeats) * (len(GC_PROFILES) + 1),
        "memory": (r or p.memory_repeats) * 2,
        "workload": (r or p.workload_repeats) * 2,
        "swarm": None,
    }[name]


@contextmanager
def _progress(console: Console | None) -> Iterator[Progress | None]:
    if console is None:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield progress


def run_bench(options: BenchOptions, *, console: Console | None = None) -> BenchResults:
    """Run the selected phases; progress bars go to ``console`` (None: silent).

    Validates the workload first (:class:`UsageError` for a bad spec). A phase
    that fails is recorded with ``status: error`` and the others still run;
    the swarm phase records ``status: not_available`` when this build has no
    swarm loop. Never writes files: see :func:`hivemind.swarm.bench.report.write_outputs`.
    """
    from hivemind.swarm.bench.measure import machine_info
    from hivemind.swarm.bench.workloads import check_workload

    check_workload(options.workload)
    preset = QUICK if options.quick else FULL
    results = BenchResults(
        command=options.command(),
        options={
            "target_mb": options.target_mb,
            "quick": options.quick,
            "workload": options.workload,
            "repeats": options.repeats,
            "seconds": options.seconds,
            "phases": list(options.phases),
            "corpus": list(options.corpus) if options.corpus is not None else None,
        },
        machine=machine_info(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    started = time.perf_counter()
    with _progress(console) as progress:
        for name in PHASES:
            if name not in options.phases:
                continue
            label, fn = _PHASES[name]
            task = (
                progress.add_task(label, total=_steps(name, options, preset)) if progress else None
            )

            def tick(task: Any = task) -> None:
                if progress is not None and task is not None:
                    progress.advance(task)

            t = time.perf_counter()
            try:
                record = fn(options, preset, tick)
            except HivemindError as exc:
                record = {"status": "error", "error": str(exc)}
            except Exception as exc:  # one phase failing must not lose the others' figures
                record = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            record.setdefault("status", "ok")
            record["duration_s"] = round(time.perf_counter() - t, 2)
            results.phases[name] = record
            if progress is not None and task is not None:
                total = progress.tasks[task].total
                progress.update(task, completed=total if total is not None else 1, total=total or 1)
    results.duration_s = round(time.perf_counter() - started, 2)
    return results
