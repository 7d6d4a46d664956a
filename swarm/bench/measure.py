"""Measurements of the optimizer library against same-run baselines.

One implementation shared by ``hivemind bench`` and
``benchmarks/bench_library.py``: each function runs both sides of a
comparison in the same process (or in fresh subprocesses, for memory and GC
figures), alternating which side goes first, and returns the raw figures
per repeat. Formatting is the caller's business.

Run as ``python -m hivemind.swarm.bench.measure --child KIND MODE SCALE`` it is
the subprocess side of :func:`memory_runs` and :func:`gc_profile_runs`: it
prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cachetools import TTLCache

from hivemind.agents.gc_optimizer import GC_PROFILES, AggressiveGCOptimizer
from hivemind.agents.gc_stats import GCPauseRecorder
from hivemind.agents.memtools import MB, current_rss_bytes, peak_rss_bytes
from hivemind.agents.pool import ObjectPool, PoolableWidgetProperties, PoolableWidgetState
from hivemind.agents.render_cache import RenderCache
from hivemind.agents.widget_manager import ManagedWidget, WidgetMemoryManager

__all__ = [
    "GC_MODES",
    "ReuseResult",
    "alternate",
    "fill_widget",
    "fmt_spread",
    "gc_profile_runs",
    "machine_info",
    "memory_runs",
    "micro_runs",
    "monitor_cpu_runs",
    "render_lines",
    "reuse_and_cache",
    "spread",
    "stress_runs",
    "tree_wave",
    "widget_creation_runs",
]

GC_MODES: tuple[str, ...] = ("default", *GC_PROFILES)
"""CPython's thresholds at start ("default"), then the four seed profiles."""

REUSE_WORKLOADS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("rerender_all", "list view, every frame re-renders all rows, 5 % rows change", None, True),
    ("dirty_only", "list view, only changed rows re-render (dirty tracking)", None, False),
    ("dashboard", "dashboard of 800 cells > cache size 500, 5 % change", 800, True),
)


# -- helpers ------------------------------------------------------------------


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (which must not be empty)."""
    vs = list(values)
    return {"median": statistics.median(vs), "min": min(vs), "max": max(vs), "n": len(vs)}


def fmt_spread(values: list[float], digits: int = 2) -> str:
    """``median (min-max)``, or just the value for a single repeat."""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def alternate(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each side ``repeats`` times, rotating the order every repeat."""
    names = list(sides)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            gc.collect()
            out[n].append(sides[n]())
    return out


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS, libc, Python and the versions a figure depends on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "libc": " ".join(platform.libc_ver()).strip() or "unknown",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gc_thresholds": list(gc.get_threshold()),
        "versions": {
            d: _version(d)
            for d in ("hivemind-swarm", "cachetools", "psutil", "redis", "ray", "matplotlib")
        },
    }


# -- a TUI-like workload -------------------------------------------------------


def render_lines(label: str, values: dict[str, Any], width: int = 40) -> list[str]:
    """A bordered box of text lines: what a TUI widget's render produces."""
    body = [f"{k}: {v}"[: width - 4] for k, v in sorted(values.items())]
    lines = ["+" + "-" * (width - 2) + "+", f"| {label:<{width - 4}} |"]
    lines += [f"| {row:<{width - 4}} |" for row in body]
    lines.append("+" + "-" * (width - 2) + "+")
    return lines


def fill_widget(state: PoolableWidgetState, props: PoolableWidgetProperties, i: int) -> None:
    """Give a widget's state and properties the contents of list row ``i``."""
    props.widget_type = "row"
    props.props.update(label=f"row {i}", width=40, align="left", wrap=False, id=i)
    props.style.update(fg="white", bg="black", bold=i % 2 == 0, padding=(0, 1))
    props.classes.extend(("row", "even" if i % 2 == 0 else "odd"))
    state.update(text=f"item {i}", selected=False, counter=i, progress=i % 100)


def _render_widget(w: ManagedWidget) -> list[str]:
    return render_lines(str(w.props.props["label"]), w.state.values)


def widget_creation_runs(n: int, repeats: int) -> dict[str, list[float]]:
    """ms to create+render ``n`` widgets: ``unpooled``, ``pooled``, ``managed``."""

    def unpooled() -> float:
        t = time.perf_counter()
        for i in range(n):
            st, pr = PoolableWidgetState(), PoolableWidgetProperties()
            fill_widget(st, pr, i)
            render_lines(str(pr.props["label"]), st.values)
        return (time.perf_counter() - t) * 1000

    sp: ObjectPool[PoolableWidgetState] = ObjectPool(PoolableWidgetState, 200)
    pp: ObjectPool[PoolableWidgetProperties] = ObjectPool(PoolableWidgetProperties, 300)

    def pooled() -> float:
        t = time.perf_counter()
        for i in range(n):
            st, pr = sp.acquire(), pp.acquire()
            fill_widget(st, pr, i)
            render_lines(str(pr.props["label"]), st.values)
            sp.release(st)
            pp.release(pr)
        return (time.perf_counter() - t) * 1000

    mgr = WidgetMemoryManager(1536)

    def managed() -> float:
        t = time.perf_counter()
        for i in range(n):
            w = ManagedWidget(mgr, "row")
            fill_widget(w.state, w.props, i)
            w.render(_render_widget)
            w.close()
        return (time.perf_counter() - t) * 1000

    try:
        return alternate({"unpooled": unpooled, "pooled": pooled, "managed": managed}, repeats)
    finally:
        mgr.close()


def _list_view_frames(frames: int, seed: int) -> list[tuple[int, int]]:
    """(rows leaving, rows entering) per frame for a list view of 50-250 rows."""
    rng = random.Random(seed)
    visible, out = 150, []
    for _ in range(frames):
        scroll = rng.choice((0, 0, 0, 1, 3, 10))  # mostly idle, sometimes scrolls
        target = max(50, min(250, visible + rng.randint(-20, 20)))
        leave = min(visible, scroll + max(0, visible - target))
        enter = scroll + max(0, target - visible)
        visible += enter - leave
        out.append((leave, enter))
    return out


@dataclass(frozen=True, slots=True)
class ReuseResult:
    """Pool reuse and render-cache hits of one TUI-like workload at 30 fps."""

    key: str
    label: str
    reused: int
    acquired: int
    reuse_rate: float
    hits: int
    lookups: int
    hit_rate: float
    cache_size: int
    cache_max: int


def reuse_and_cache(frames: int) -> list[ReuseResult]:
    """Run the three workloads of :data:`REUSE_WORKLOADS` for ``frames`` frames each.

    Manager defaults (pools 200/300, cache 500 entries, TTL 10 s) on a clock
    that advances 1/30 s per frame; the workloads are not tuned to the cache.
    """
    clock = [0.0]
    out: list[ReuseResult] = []
    rng = random.Random(7)
    changes = 0.05
    for key, label, widgets_n, rerender_all in REUSE_WORKLOADS:
        clock[0] = 0.0
        mgr = WidgetMemoryManager(1536, timer=lambda: clock[0])
        if widgets_n is None:
            live = [mgr.create_widget("row") for _ in range(150)]
            plan = _list_view_frames(frames, 11)
        else:
            live = [mgr.create_widget("cell") for _ in range(widgets_n)]
            plan = [(0, 0)] * frames
        for i, w in enumerate(live):
            fill_widget(w.state, w.props, i)
        for leave, enter in plan:
            clock[0] += 1 / 30
            for w in live[:leave]:
                w.close()
            del live[:leave]
            for _ in range(enter):
                w = mgr.create_widget("row")
                fill_widget(w.state, w.props, rng.randint(0, 10**6))
                live.append(w)
            dirty = {id(w) for w in live[-enter:]} if enter else set()
            for w in live:
                if rng.random() < changes:
                    w.state.update(counter=rng.randint(0, 10**6))
                    dirty.add(id(w))
            for w in live:
                if rerender_all or id(w) in dirty:
                    w.render(_render_widget)
        ps, cs = mgr.state_pool.stats(), mgr.render_cache.stats()
        out.append(
            ReuseResult(
                key,
                label,
                ps.reused,
                ps.acquired,
                ps.reuse_rate,
                cs.hits,
                cs.lookups,
                cs.hit_rate,
                cs.size,
                cs.max_size,
            )
        )
        for w in live:
            w.close()
        mgr.close()
    return out


def micro_runs(n: int, repeats: int) -> dict[str, list[float]]:
    """ns per op: ``construct``, ``list`` free-list, ``pool``, ``ttl`` cache, ``rc`` cache."""
    pool: ObjectPool[PoolableWidgetState] = ObjectPool(PoolableWidgetState, 64)
    free: list[PoolableWidgetState] = []

    def bare_construct() -> float:
        t = time.perf_counter()
        for _ in range(n):
            PoolableWidgetState()
        return (time.perf_counter() - t) * 1e9 / n

    def bare_list_pool() -> float:
        t = time.perf_counter()
        for _ in range(n):
            obj = free.pop() if free else PoolableWidgetState()
            obj.reset()
            free.append(obj)
        return (time.perf_counter() - t) * 1e9 / n

    def object_pool() -> float:
        t = time.perf_counter()
        for _ in range(n):
            pool.release(pool.acquire())
        return (time.perf_counter() - t) * 1e9 / n

    keys = [random.Random(3).randint(0, 400) for _ in range(n)]
    bare: TTLCache[int, int] = TTLCache(500, 30.0)
    ours: RenderCache[int, int] = RenderCache(500, 30.0)

    def bare_cache() -> float:
        t = time.perf_counter()
        for k in keys:
            try:
                bare[k]
            except KeyError:
                bare[k] = k
        return (time.perf_counter() - t) * 1e9 / n

    def render_cache() -> float:
        t = time.perf_counter()
        for k in keys:
            if ours.get(k) is None:
                ours.set(k, k)
        return (time.perf_counter() - t) * 1e9 / n

    return alternate(
        {
            "construct": bare_construct,
            "list": bare_list_pool,
            "pool": object_pool,
            "ttl": bare_cache,
            "rc": render_cache,
        },
        repeats,
    )


def monitor_cpu_runs(seconds: float, repeats: int) -> tuple[dict[str, list[float]], float]:
    """Process CPU % of one core, ``idle`` vs ``monitors`` running; and one adapt() in µs."""
    opt = AggressiveGCOptimizer(1536)
    mgr = WidgetMemoryManager(1536)

    def idle() -> float:
        c, w = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return (time.process_time() - c) / (time.monotonic() - w) * 100

    def monitored() -> float:
        opt.start_monitoring()
        mgr.start_monitoring()
        try:
            return idle()
        finally:
            opt.stop_monitoring()
            mgr.stop_monitoring()

    try:
        res = alternate({"idle": idle, "monitors": monitored}, repeats)
        t = time.perf_counter()
        for _ in range(2000):
            opt.adapt()
        tick_us = (time.perf_counter() - t) / 2000 * 1e6
    finally:
        opt.close()
        mgr.close()
    return res, tick_us


# -- subprocess workloads ---------------------------------------------------------


def tree_wave(n: int, payload: int, seed: int) -> list[dict[str, Any]]:
    """``n`` widget dicts in a parent/child tree: every widget is in a cycle."""
    rng = random.Random(seed)
    widgets: list[dict[str, Any]] = []
    for i in range(n):
        w: dict[str, Any] = {
            "id": i,
            "state": {"text": "x" * payload, "n": rng.random()},
            "props": {"label": f"w{i}", "classes": ["a", "b"]},
            "children": [],
            "lines": render_lines(f"w{i}", {"n": i}),
        }
        if widgets:
            parent = widgets[i // 2]
            parent["children"].append(w)
            w["parent"] = parent
        widgets.append(w)
    return widgets


def child_memory(mode: str, scale: float) -> dict[str, Any]:
    """Peak/residual RSS of a widget-tree workload, ``with`` or ``without`` optimizers."""
    base = current_rss_bytes() / MB
    waves, per_wave = int(60 * scale) or 5, 4000
    opt = None
    if mode == "with":
        # Target: 64 MB above the start, so the adaptive levels engage.
        opt = AggressiveGCOptimizer(base + 64, sample_interval_s=0.05, min_dwell_s=1.0)
        opt.start_monitoring()
    retained: list[list[dict[str, Any]]] = []
    t = time.perf_counter()
    for wave in range(waves):
        retained.append(tree_wave(per_wave, 200, wave))
        if len(retained) > 3:  # a screen keeps the last three waves alive
            retained.pop(0)
    work_s = time.perf_counter() - t
    retained.clear()
    if opt is not None:
        from hivemind.agents.emergency import emergency_optimize

        opt.stop_monitoring()
        emergency_optimize(base + 64)
    residual = current_rss_bytes() / MB - base
    return {
        "peak_mb": peak_rss_bytes() / MB - base,
        "residual_mb": residual,
        "work_s": work_s,
        "switches": opt.strategy_switches if opt else 0,
        "forced": opt.forced_collections if opt else 0,
    }


def child_gc_profile(mode: str, scale: float) -> dict[str, Any]:
    """One GC profile (or CPython's defaults) on a cyclic-garbage workload."""
    live = [{"k": i, "v": [i]} for i in range(200_000)]  # a long-lived heap to scan
    base = current_rss_bytes() / MB
    if mode != "default":
        gc.set_threshold(*GC_PROFILES[mode].thresholds)
    rec = GCPauseRecorder()
    rec.install()
    t = time.perf_counter()
    for wave in range(int(40 * scale) or 4):
        tree_wave(3000, 100, wave)  # garbage at once: all cycles
    work_s = time.perf_counter() - t
    rec.uninstall()
    s = rec.snapshot()
    del live
    return {
        "pause_ms": s.pause_ms_total,
        "pause_max_ms": s.pause_ms_max,
        "collections": s.collections,
        "collected": s.collected,
        "per_ms": s.collected_per_pause_ms,
        "peak_mb": peak_rss_bytes() / MB - base,
        "work_s": work_s,
    }


def child_stress(mode: str, scale: float) -> dict[str, Any]:
    """The seed report's three stress tests at ``scale``, target ``float(mode)`` MB."""
    from hivemind.agents.benchmarker import HiveMindMemoryBenchmarker

    bench = HiveMindMemoryBenchmarker(float(mode))
    return {"results": [r.as_dict() for r in bench.run_stress_tests(scale=scale)]}


CHILDREN: dict[str, Callable[[str, float], dict[str, Any]]] = {
    "memory": child_memory,
    "gc": child_gc_profile,
    "stress": child_stress,
}


def run_child(kind: str, mode: str, scale: float) -> dict[str, Any]:
    """Run one child measurement in a fresh interpreter; its JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", "hivemind.swarm.bench.measure", "--child", kind, mode, str(scale)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def memory_runs(
    repeats: int, scale: float, on_run: Callable[[], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Widget-tree workload ``without`` vs ``with`` the adaptive optimizers, per repeat."""
    res: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for r in range(repeats):
        for mode in ("without", "with") if r % 2 == 0 else ("with", "without"):
            res[mode].append(run_child("memory", mode, scale))
            if on_run:
                on_run()
    return res


def gc_profile_runs(
    repeats: int, scale: float, on_run: Callable[[], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Each mode of :data:`GC_MODES` on the cyclic-garbage workload, rotating order."""
    modes = list(GC_MODES)
    res: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(repeats):
        for m in modes[r % len(modes) :] + modes[: r % len(modes)]:
            res[m].append(run_child("gc", m, scale))
            if on_run:
                on_run()
    return res


def stress_runs(
    target_mb: float, repeats: int, scale: float, on_run: Callable[[], None] | None = None
) -> list[list[dict[str, Any]]]:
    """The three stress tests, each repeat in a fresh interpreter."""
    out: list[list[dict[str, Any]]] = []
    for _ in range(repeats):
        out.append(list(run_child("stress", f"{target_mb}", scale)["results"]))
        if on_run:
            on_run()
    return out


def _main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "--child" or argv[1] not in CHILDREN:
        print("usage: python -m hivemind.swarm.bench.measure --child memory|gc|stress MODE SCALE")
        return 2
    print(json.dumps(CHILDREN[argv[1]](argv[2], float(argv[3]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
