"""Workloads for ``hivemind bench`` and ``hivemind demo``, and user workloads by path.

A workload is any callable ``run(seconds, report) -> int``: it works for
about ``seconds`` seconds, may call ``report(units_so_far)`` now and then
(cumulative units, for progress; calling it is optional and cheap), and
returns the units of work it did, so guarded and unguarded runs can be
compared on throughput as well as memory.

Built in (:data:`BUILTIN`):

* ``demo``: a leaky TUI-like app. Every frame it renders widgets through a
  :class:`~hivemind.agents.widget_manager.WidgetMemoryManager`, keeps each
  rendered frame in a big, long-TTL :class:`RenderCache` (never hit again),
  borrows scratch buffers from a pool in bursts (the pool keeps them), and
  drops parent/child widget trees (cyclic garbage) with GC thresholds raised
  the way latency-tuned apps raise them. All of that is memory the swarm can
  take back (evict caches, trim pools, collect), and it arrives at a fixed
  rate so that, unguarded, RSS ends near 1.5x the target: the target is
  ``HIVEMIND_TARGET_MB`` (default 256) or :func:`make_demo`'s argument.
* ``widgets``: widget lifecycle through the manager (create, change, render,
  close); steady memory. Units: widgets.
* ``objects``: pooled object creation and destruction in batches of 1,000;
  steady memory. Units: objects.

A user workload is ``PATH.py:callable``. :func:`check_workload` validates a
spec (file, syntax, callable) without running the user's code in this
process; :func:`run_workload_process` runs it in a child interpreter
(``python -m hivemind.swarm.bench.workloads``) so a crash or a leak stays there.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hivemind.swarm.errors import HivemindError, UsageError

__all__ = [
    "BUILTIN",
    "DEFAULT_DEMO_TARGET_MB",
    "Report",
    "Workload",
    "WorkloadRun",
    "WorkloadSpec",
    "check_workload",
    "demo",
    "load_workload",
    "make_demo",
    "objects",
    "parse_workload",
    "run_workload_process",
    "widgets",
]

Report = Callable[[int], None]
Workload = Callable[[float, Report], int]

DEFAULT_DEMO_TARGET_MB = 256.0
_MB = 1024 * 1024


def _target_from_env() -> float:
    try:
        value = float(os.environ.get("HIVEMIND_TARGET_MB", DEFAULT_DEMO_TARGET_MB))
    except ValueError:
        return DEFAULT_DEMO_TARGET_MB
    return value if value > 0 else DEFAULT_DEMO_TARGET_MB


# -- built-in workloads --------------------------------------------------------


def make_demo(target_mb: float | None = None, *, overshoot: float = 1.5) -> Workload:
    """The ``demo`` workload for a given target (default: ``HIVEMIND_TARGET_MB`` or 256).

    Unguarded, the reclaimable memory it holds grows linearly so that RSS
    reaches about ``overshoot * target_mb`` after ``seconds``.
    """
    if target_mb is not None and not target_mb > 0:
        raise ValueError(f"target_mb must be > 0, got {target_mb!r}")
    if not overshoot > 0:
        raise ValueError(f"overshoot must be > 0, got {overshoot!r}")

    def demo_run(seconds: float, report: Report) -> int:
        return _demo(seconds, report, target_mb or _target_from_env(), overshoot)

    demo_run.__doc__ = demo.__doc__
    return demo_run


def demo(seconds: float, report: Report) -> int:
    """Leaky TUI-like app (see the module doc); units are rendered frames."""
    return _demo(seconds, report, _target_from_env(), 1.5)


def _demo(seconds: float, report: Report, target_mb: float, overshoot: float) -> int:
    from hivemind.agents.memtools import current_rss_bytes
    from hivemind.agents.pool import ObjectPool
    from hivemind.agents.render_cache import RenderCache
    from hivemind.agents.widget_manager import WidgetMemoryManager
    from hivemind.swarm.bench.measure import render_lines, tree_wave

    start_rss = current_rss_bytes()
    # Bytes of reclaimable memory to add per second so RSS ends near overshoot*target.
    rate = max(overshoot * target_mb * _MB - start_rss, 32 * _MB) / max(seconds, 0.1)
    history: RenderCache[int, tuple[bytes, list[str]]] = RenderCache(
        1_000_000, 3600.0, name="demo_frame_history"
    )
    buffers: ObjectPool[bytearray] = ObjectPool(
        lambda: bytearray(64 * 1024), 100_000, name="demo_scratch"
    )
    manager = WidgetMemoryManager(target_mb)
    old_threshold = gc.get_threshold()
    gc.set_threshold(20_000, 50, 100)  # a latency-tuned app: few collections
    added = 0
    frame = 0
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            frame += 1
            rows = [manager.create_widget("row", label=f"row {i}") for i in range(20)]
            lines: list[str] = []
            for i, w in enumerate(rows):
                w.state.update(counter=frame, text=f"frame {frame} row {i}")
                lines += w.render(
                    lambda w: render_lines(str(w.props.props["label"]), w.state.values)
                )
            for w in rows:
                w.close()
            tree_wave(50, 100, frame)  # cyclic garbage, left to the collector
            due = int(rate * elapsed) - added
            if due > 0:
                if frame % 10 == 0:  # a burst: scratch buffers, kept by the pool
                    held = [buffers.acquire() for _ in range(max(1, due // (2 * 64 * 1024)))]
                    for b in held:
                        b[0] = frame & 0xFF
                        buffers.release(b)
                    added += len(held) * 64 * 1024
                    due -= len(held) * 64 * 1024
                if due > 0:
                    history.set(frame, (b"\x01" * due, lines))  # the frame is never shown again
                    added += due
            if frame % 20 == 0:
                report(frame)
            time.sleep(0.002)  # a TUI waits for input between frames
    finally:
        gc.set_threshold(*old_threshold)
        history.clear()
        buffers.trim()
        manager.close()
    report(frame)
    return frame


def widgets(seconds: float, report: Report) -> int:
    """Widget lifecycle through the manager; units are widgets closed."""
    from hivemind.agents.widget_manager import WidgetMemoryManager
    from hivemind.swarm.bench.measure import render_lines

    manager = WidgetMemoryManager(_target_from_env())
    done = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            batch = [manager.create_widget("label", label=f"w{done + i}") for i in range(100)]
            for step in range(3):
                for w in batch:
                    w.state.update(counter=step)
                    w.render(lambda w: render_lines(str(w.props.props["label"]), w.state.values))
            for w in batch:
                w.close()
            done += len(batch)
            report(done)
    finally:
        manager.close()
    return done


def objects(seconds: float, report: Report) -> int:
    """Pooled objects created and destroyed in batches of 1,000; units are objects."""
    from hivemind.agents.pool import ObjectPool, PoolableWidgetState

    pool: ObjectPool[PoolableWidgetState] = ObjectPool(PoolableWidgetState, 200, name="objects")
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held = [pool.acquire() for _ in range(1000)]
        for i, obj in enumerate(held):
            obj.update(index=done + i, text=f"object {done + i}", items=[i, i + 1])
        for obj in held:
            pool.release(obj)
        done += len(held)
        report(done)
    pool.trim()
    return done


BUILTIN: dict[str, Workload] = {"demo": demo, "widgets": widgets, "objects": objects}


# -- specs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A parsed ``--workload`` value: a built-in name or ``PATH.py:callable``."""

    spec: str
    kind: Literal["builtin", "path"]
    name: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.name if self.path is None else f"{self.path.name}:{self.name}"


def parse_workload(spec: str) -> WorkloadSpec:
    """Parse ``spec`` without reading any file; :class:`UsageError` if malformed."""
    if spec in BUILTIN:
        return WorkloadSpec(spec, "builtin", spec)
    path_part, sep, attr = spec.rpartition(":")
    if not sep or not path_part.endswith(".py") or not attr.isidentifier():
        raise UsageError(f"bad --workload {spec!r}: use {'|'.join(BUILTIN)} or PATH.py:callable")
    return WorkloadSpec(spec, "path", attr, Path(path_part).expanduser().resolve())


def check_workload(spec: str, *, timeout_s: float = 30.0) -> WorkloadSpec:
    """Parse and validate ``spec``: the file exists, parses, and names a callable.

    The syntax check reads the file; the callable check imports the module
    in a child interpreter (it may run the module's top level), never here.
    Raises :class:`UsageError` with one line for every way it can be wrong.
    """
    ws = parse_workload(spec)
    if ws.path is None:
        return ws
    if not ws.path.is_file():
        raise UsageError(f"workload file not found: {ws.path}")
    try:
        ast.parse(ws.path.read_bytes(), filename=str(ws.path))
    except SyntaxError as exc:
        raise UsageError(
            f"workload file {ws.path.name} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read workload file {ws.path}: {exc}") from None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hivemind.swarm.bench.workloads", "--check", spec],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"importing {ws.path.name} took over {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        raise UsageError(lines[-1] if lines else f"cannot load workload {spec!r}")
    return ws


def load_workload(spec: str) -> Workload:
    """Import the workload ``spec`` names, in this process. :class:`UsageError` if it can't."""
    ws = parse_workload(spec)
    if ws.path is None:
        return BUILTIN[ws.name]
    if not ws.path.is_file():
        raise UsageError(f"workload file not found: {ws.path}")
    mod_name = f"hivemind_user_workload_{abs(hash(str(ws.path)))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, ws.path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"cannot import {ws.path}")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(ws.path.parent))
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(
            f"workload file {ws.path.name} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:
        raise UsageError(
            f"importing {ws.path.name} raised {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    if not hasattr(module, ws.name):
        raise UsageError(f"{ws.path.name} has no attribute {ws.name!r}")
    fn = getattr(module, ws.name)
    if not callable(fn):
        raise UsageError(f"{ws.path.name}:{ws.name} is a {type(fn).__name__}, not a callable")
    return fn  # type: ignore[no-any-return]


# -- running in a child process ---------------------------------------------------

Guard = Literal["none", "library"]


@dataclass(slots=True)
class WorkloadRun:
    """One run of a workload in a child process, as the child measured it."""

    side: str
    units: int = 0
    duration_s: float = 0.0
    start_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    time_over_target_s: float = 0.0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, str, str, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None
    started_at: float = 0.0  # wall clock at the timeline's t = 0

    @classmethod
    def from_json(cls, side: str, data: dict[str, Any]) -> WorkloadRun:
        return cls(
            side=side,
            units=int(data.get("units", 0)),
            duration_s=float(data.get("duration_s", 0.0)),
            start_rss_mb=float(data.get("start_rss_mb", 0.0)),
            peak_rss_mb=float(data.get("peak_rss_mb", 0.0)),
            time_over_target_s=float(data.get("time_over_target_s", 0.0)),
            timeline=[(float(t), float(m)) for t, m in data.get("timeline", [])],
            decisions=[
                (float(t), str(lv), str(a), int(b)) for t, lv, a, b in data.get("decisions", [])
            ],
            latencies_ms=[float(x) for x in data.get("latencies_ms", [])],
            error=data.get("error"),
            started_at=float(data.get("started_at", 0.0)),
        )


def run_workload_process(
    spec: str,
    seconds: float,
    target_mb: float,
    guard: Guard,
    *,
    side: str | None = None,
    env: dict[str, str] | None = None,
) -> WorkloadRun:
    """Run ``spec`` for ``seconds`` in a child interpreter, sampling its RSS every 50 ms.

    ``env`` replaces the child's environment (``hivemind run``'s, to have the
    swarm guard it). ``guard="library"`` runs the in-process guard (no swarm): on the seed's
    levels it applies GC profiles, and above 90 % of the target it calls
    ``emergency_optimize`` (at most once a second). A crash, a bad return
    value or a timeout comes back as ``WorkloadRun.error``, never raised.
    """
    cmd = [
        sys.executable,
        "-m",
        "hivemind.swarm.bench.workloads",
        "--run",
        spec,
        f"{seconds}",
        f"{target_mb}",
        guard,
    ]
    label = side or ("unguarded" if guard == "none" else "library-guarded")
    env = {**(os.environ if env is None else env), "HIVEMIND_TARGET_MB": f"{target_mb}"}
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=seconds * 3 + 60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return WorkloadRun(label, error=f"workload did not finish within {seconds * 3 + 60:g} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit {proc.returncode}"
        )
        return WorkloadRun(label, error=f"workload process died ({how}): {tail}"[:300])
    return WorkloadRun.from_json(label, json.loads(lines[-1]))


class _Sampler:
    """RSS timeline, time over target and (with ``guard``) the in-process guard."""

    def __init__(self, target_mb: float, guard: bool, interval_s: float = 0.05) -> None:
        from hivemind.agents.memtools import current_rss_mb

        self._rss = current_rss_mb
        self.target_mb = target_mb
        self.guard = guard
        self.interval_s = interval_s
        self.t0 = time.monotonic()
        self.timeline: list[tuple[float, float]] = []
        self.decisions: list[tuple[float, str, str, int]] = []
        self.latencies_ms: list[float] = []
        self.over_s = 0.0
        self.peak = self._rss()
        self._level = "conservative"
        self._last_reclaim = -1e9
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="hivemind-bench-sampler", daemon=True
        )

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        rss = self._rss()
        t = now - self.t0
        if self.timeline and rss > self.target_mb:
            self.over_s += t - self.timeline[-1][0]
        self.timeline.append((round(t, 3), round(rss, 2)))
        self.peak = max(self.peak, rss)
        if self.guard:
            self._react(now, t, rss)

    def _react(self, now: float, t: float, rss: float) -> None:
        from hivemind.agents.emergency import emergency_optimize
        from hivemind.agents.gc_optimizer import apply_gc_profile, level_with_hysteresis

        level = level_with_hysteresis(self._level, rss, self.target_mb)
        if level != self._level:
            self._level = level
            apply_gc_profile(level)
            self.decisions.append((round(t, 3), level, f"gc profile {level}", 0))
        if rss > 0.9 * self.target_mb and now - self._last_reclaim >= 1.0:
            res = emergency_optimize(self.target_mb)
            self._last_reclaim = time.monotonic()
            self.latencies_ms.append((self._last_reclaim - now) * 1000.0)
            freed = max(0, int(float(res["freed_mb"]) * _MB))
            self.decisions.append(
                (
                    round(t, 3),
                    self._level,
                    "evict caches, trim pools, collect, malloc_trim",
                    freed,
                )
            )


def _child_run(spec: str, seconds: float, target_mb: float, guard: str) -> dict[str, Any]:
    from hivemind.agents.memtools import current_rss_mb

    try:
        fn = load_workload(spec)
    except HivemindError as exc:
        return {"error": str(exc)}
    start = current_rss_mb()
    units: object = 0
    error: str | None = None
    t = time.monotonic()
    with _Sampler(target_mb, guard == "library") as s:
        try:
            units = fn(seconds, lambda n: None)
        except Exception as exc:
            error = f"workload raised {type(exc).__name__}: {exc}".splitlines()[0][:300]
    duration = time.monotonic() - t
    if error is None and (not isinstance(units, int) or isinstance(units, bool)):
        error = f"workload returned {type(units).__name__}, expected int units of work"
    return {
        "units": units if isinstance(units, int) else 0,
        "duration_s": duration,
        "start_rss_mb": start,
        "peak_rss_mb": s.peak,
        "time_over_target_s": s.over_s,
        "timeline": s.timeline,
        "decisions": s.decisions,
        "latencies_ms": s.latencies_ms,
        "error": error,
        "started_at": time.time() - (time.monotonic() - s.t0),
    }


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--check":
        try:
            load_workload(argv[1])
        except HivemindError as exc:
            print(str(exc))
            return 2
        return 0
    if len(argv) == 5 and argv[0] == "--run":
        out = _child_run(argv[1], float(argv[2]), float(argv[3]), argv[4])
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(out), flush=True)
        return 0 if out.get("error") is None else 1
    print(
        "usage: python -m hivemind.swarm.bench.workloads --check SPEC | --run SPEC S TARGET GUARD"
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
