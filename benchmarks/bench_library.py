"""Benchmark of the in-process optimizer library against its baselines.

Run: ``.venv/bin/python -m benchmarks.bench_library [--quick]``. Prints a
markdown section and writes it to ``benchmarks/results/library.md``.

Every figure is measured against its baseline in the same run, alternating
which side goes first, over several repeats; tables show the median and the
min-max spread. Memory and GC-profile figures run each side in a fresh
subprocess so one side's heap cannot flatter or penalize the other.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cachetools import TTLCache

from hivemind.agents.gc_optimizer import GC_PROFILES, AggressiveGCOptimizer
from hivemind.agents.gc_stats import GCPauseRecorder
from hivemind.agents.memtools import MB, current_rss_bytes, peak_rss_bytes
from hivemind.agents.pool import ObjectPool, PoolableWidgetProperties, PoolableWidgetState
from hivemind.agents.render_cache import RenderCache
from hivemind.agents.widget_manager import ManagedWidget, WidgetMemoryManager

RESULTS = Path(__file__).resolve().parent / "results" / "library.md"


# -- helpers -----------------------------------------------------------------


def _fmt(values: list[float], digits: int = 2) -> str:
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


def machine_info() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    libc = " ".join(platform.libc_ver())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- OS: {platform.platform()} ({libc})",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"cachetools {version('cachetools')}, psutil {version('psutil')}",
        f"- GC thresholds at start: {gc.get_threshold()}",
    ]


# -- TUI-like workload ---------------------------------------------------------


def render_lines(label: str, values: dict[str, Any], width: int = 40) -> list[str]:
    body = [f"{k}: {v}"[: width - 4] for k, v in sorted(values.items())]
    lines = ["+" + "-" * (width - 2) + "+", f"| {label:<{width - 4}} |"]
    lines += [f"| {row:<{width - 4}} |" for row in body]
    lines.append("+" + "-" * (width - 2) + "+")
    return lines


def _fill(state: PoolableWidgetState, props: PoolableWidgetProperties, i: int) -> None:
    props.widget_type = "row"
    props.props.update(label=f"row {i}", width=40, align="left", wrap=False, id=i)
    props.style.update(fg="white", bg="black", bold=i % 2 == 0, padding=(0, 1))
    props.classes.extend(("row", "even" if i % 2 == 0 else "odd"))
    state.update(text=f"item {i}", selected=False, counter=i, progress=i % 100)


def bench_widget_creation(n: int, repeats: int) -> list[str]:
    def unpooled() -> float:
        t = time.perf_counter()
        for i in range(n):
            st, pr = PoolableWidgetState(), PoolableWidgetProperties()
            _fill(st, pr, i)
            render_lines(str(pr.props["label"]), st.values)
        return (time.perf_counter() - t) * 1000

    sp: ObjectPool[PoolableWidgetState] = ObjectPool(PoolableWidgetState, 200)
    pp: ObjectPool[PoolableWidgetProperties] = ObjectPool(PoolableWidgetProperties, 300)

    def pooled() -> float:
        t = time.perf_counter()
        for i in range(n):
            st, pr = sp.acquire(), pp.acquire()
            _fill(st, pr, i)
            render_lines(str(pr.props["label"]), st.values)
            sp.release(st)
            pp.release(pr)
        return (time.perf_counter() - t) * 1000

    mgr = WidgetMemoryManager(1536)

    def managed() -> float:
        t = time.perf_counter()
        for i in range(n):
            w = ManagedWidget(mgr, "row")
            _fill(w.state, w.props, i)
            w.render(lambda w: render_lines(str(w.props.props["label"]), w.state.values))
            w.close()
        return (time.perf_counter() - t) * 1000

    res = alternate({"unpooled": unpooled, "pooled": pooled, "managed": managed}, repeats)
    base = statistics.median(res["unpooled"])
    rows = [
        "| side | ms per 1,000 widgets | vs unpooled |",
        "|---|---|---|",
    ]
    for name, label in (
        ("unpooled", "construct state+props, render"),
        ("pooled", "ObjectPool state+props, render"),
        ("managed", "ManagedWidget (pools+registry+cache), render"),
    ):
        ms = [v * 1000 / n for v in res[name]]
        rows.append(f"| {label} | {_fmt(ms)} | {statistics.median(res[name]) / base:.2f}x |")
    return rows


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


def bench_reuse_and_cache(frames: int) -> tuple[list[str], dict[str, float]]:
    clock = [0.0]
    rows = [
        "| workload | pool reuse rate | render cache hit rate | cache size / max |",
        "|---|---|---|---|",
    ]
    figures: dict[str, float] = {}
    rng = random.Random(7)
    for name, changes, widgets_n, rerender_all in (
        ("list view, every frame re-renders all rows, 5 % rows change", 0.05, None, True),
        ("list view, only changed rows re-render (dirty tracking)", 0.05, None, False),
        ("dashboard of 800 cells > cache size 500, 5 % change", 0.05, 800, True),
    ):
        clock[0] = 0.0
        mgr = WidgetMemoryManager(1536, timer=lambda: clock[0])
        live: list[ManagedWidget] = []
        if widgets_n is None:
            live = [mgr.create_widget("row") for _ in range(150)]
            plan = _list_view_frames(frames, 11)
        else:
            live = [mgr.create_widget("cell") for _ in range(widgets_n)]
            plan = [(0, 0)] * frames
        for i, w in enumerate(live):
            _fill(w.state, w.props, i)
        dirty: set[int] = set(range(len(live)))
        for leave, enter in plan:
            clock[0] += 1 / 30  # 30 frames per second
            for w in live[:leave]:
                w.close()
            del live[:leave]
            for _ in range(enter):
                w = mgr.create_widget("row")
                _fill(w.state, w.props, rng.randint(0, 10**6))
                live.append(w)
            dirty = {id(w) for w in live[-enter:]} if enter else set()
            for w in live:
                if rng.random() < changes:
                    w.state.update(counter=rng.randint(0, 10**6))
                    dirty.add(id(w))
            for w in live:
                if rerender_all or id(w) in dirty:
                    w.render(lambda w: render_lines(str(w.props.props["label"]), w.state.values))
        ps, cs = mgr.state_pool.stats(), mgr.render_cache.stats()
        rows.append(
            f"| {name} | {ps.reuse_rate:.1%} ({ps.reused}/{ps.acquired}) | "
            f"{cs.hit_rate:.1%} ({cs.hits}/{cs.lookups}) | {cs.size}/{cs.max_size} |"
        )
        figures[name] = cs.hit_rate
        for w in live:
            w.close()
        mgr.close()
    return rows, figures


def bench_micro(n: int, repeats: int) -> list[str]:
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

    res = alternate(
        {
            "construct": bare_construct,
            "list": bare_list_pool,
            "pool": object_pool,
            "ttl": bare_cache,
            "rc": render_cache,
        },
        repeats,
    )
    med = {k: statistics.median(v) for k, v in res.items()}
    return [
        "| operation | ns per op | vs baseline | bound |",
        "|---|---|---|---|",
        f"| bare `PoolableWidgetState()` construction | {_fmt(res['construct'], 0)} | baseline | |",
        f"| bare list free-list (pop, reset, append; no lock, no stats) | {_fmt(res['list'], 0)} "
        f"| {med['list'] / med['construct']:.2f}x construction | |",
        f"| `ObjectPool` acquire+release (lock, stats, reset) | {_fmt(res['pool'], 0)} | "
        f"{med['pool'] / med['construct']:.2f}x construction, "
        f"{med['pool'] / med['list']:.2f}x bare free-list | "
        f"{'holds' if med['pool'] <= 1.5 * med['construct'] else 'FAILS'} (<= 1.5x construction) |",
        f"| bare `cachetools.TTLCache` get/set (~80 % hits) | {_fmt(res['ttl'], 0)} | baseline | |",
        f"| `RenderCache` get/set (lock, stats) | {_fmt(res['rc'], 0)} | "
        f"{med['rc'] / med['ttl']:.2f}x | "
        f"{'holds' if med['rc'] <= 1.5 * med['ttl'] else 'FAILS'} (<= 1.5x) |",
    ]


# -- subprocess workloads -------------------------------------------------------


def _child(argv: list[str]) -> None:
    kind, mode, scale = argv[0], argv[1], float(argv[2])
    print(json.dumps(CHILDREN[kind](mode, scale)))


def _tree_wave(n: int, payload: int, seed: int) -> list[dict[str, Any]]:
    """n widget dicts in a parent/child tree: every widget is in a cycle."""
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
    """Peak/residual RSS of a widget-tree workload, with or without optimizers."""
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
        retained.append(_tree_wave(per_wave, 200, wave))
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
        _tree_wave(3000, 100, wave)  # garbage at once: all cycles
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


CHILDREN: dict[str, Callable[[str, float], dict[str, Any]]] = {
    "memory": child_memory,
    "gc": child_gc_profile,
}


def run_child(kind: str, mode: str, scale: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_library", "--child", kind, mode, str(scale)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_memory(repeats: int, scale: float) -> list[str]:
    res: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for r in range(repeats):
        for mode in ("without", "with") if r % 2 == 0 else ("with", "without"):
            res[mode].append(run_child("memory", mode, scale))
    rows = [
        "| side | peak RSS growth MB | residual RSS MB after work | work s "
        "| GC switches / forced collections |",
        "|---|---|---|---|---|",
    ]
    for mode, label in (
        ("without", "CPython defaults, no optimizers"),
        ("with", "adaptive GC monitor + emergency_optimize at end"),
    ):
        rs = res[mode]
        rows.append(
            f"| {label} | {_fmt([x['peak_mb'] for x in rs], 1)} | "
            f"{_fmt([x['residual_mb'] for x in rs], 1)} | {_fmt([x['work_s'] for x in rs])} | "
            f"{statistics.median([x['switches'] for x in rs]):.0f} / "
            f"{statistics.median([x['forced'] for x in rs]):.0f} |"
        )
    return rows


def bench_gc_profiles(repeats: int, scale: float) -> list[str]:
    modes = ["default", *GC_PROFILES]
    res: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(repeats):
        for m in modes[r % len(modes) :] + modes[: r % len(modes)]:
            res[m].append(run_child("gc", m, scale))
    d_eff = statistics.median([x["per_ms"] for x in res["default"]])
    d_peak = statistics.median([x["peak_mb"] for x in res["default"]])
    rows = [
        "| thresholds | collections | GC pause ms total | max pause ms | objects freed per ms "
        "of pause | efficiency vs default | peak RSS growth MB | work s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in modes:
        rs = res[m]
        eff = statistics.median([x["per_ms"] for x in rs])
        peaks = [x["peak_mb"] for x in rs]
        th = gc.get_threshold() if m == "default" else GC_PROFILES[m].thresholds
        rows.append(
            f"| {m} {th} | {statistics.median([x['collections'] for x in rs]):.0f} | "
            f"{_fmt([x['pause_ms'] for x in rs], 1)} | "
            f"{_fmt([x['pause_max_ms'] for x in rs], 1)} | "
            f"{_fmt([x['per_ms'] for x in rs], 0)} | {eff / d_eff:.2f}x | "
            f"{_fmt(peaks, 1)} ({statistics.median(peaks) - d_peak:+.1f}) | "
            f"{_fmt([x['work_s'] for x in rs])} |"
        )
    return rows


def bench_monitor_cpu(seconds: float, repeats: int) -> list[str]:
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

    res = alternate({"idle": idle, "monitors": monitored}, repeats)
    t = time.perf_counter()
    for _ in range(2000):
        opt.adapt()
    tick_us = (time.perf_counter() - t) / 2000 * 1e6
    opt.close()
    mgr.close()
    return [
        "| side | process CPU, % of one core |",
        "|---|---|",
        f"| idle process, {seconds:g} s | {_fmt(res['idle'], 3)} |",
        f"| GC monitor (1 s) + widget monitor (5 s) running, {seconds:g} s | "
        f"{_fmt(res['monitors'], 3)} |",
        f"| one GC monitor step (`adapt()`, no collection due), measured directly | "
        f"{tick_us:.1f} µs, i.e. {tick_us / 1e6 * 100:.4f} % of a core at 1 s |",
    ]


# -- main ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller, about 30 s")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    q = args.quick
    started = time.perf_counter()
    cmd = ".venv/bin/python -m benchmarks.bench_library" + (" --quick" if q else "")
    out = ["## Optimizer library (`agents/`)", "", f"Command: `{cmd}`", "", *machine_info(), ""]
    out += ["Figures: median (min-max) over the repeats; sides alternate order each repeat.", ""]

    out += [
        "### Widget creation, pooled vs unpooled",
        "",
        "Seed report: 100 ms -> 35 ms (65 % faster).",
        "",
    ]
    out += bench_widget_creation(1000 if q else 5000, 5 if q else 9)

    out += [
        "",
        "### Object reuse and render cache hit rate (TUI-like workload, 30 fps)",
        "",
        "Seed report: 85 % reuse, 90 %+ cache hits. Manager defaults (pools 200/300, cache "
        "500 entries, TTL 10 s); the workload is not tuned to the cache.",
        "",
    ]
    rows, _ = bench_reuse_and_cache(300 if q else 1800)
    out += rows

    out += ["", "### Pool and cache overhead vs bare", ""]
    out += bench_micro(50_000 if q else 200_000, 5 if q else 9)

    out += [
        "",
        "### Peak and residual memory, with vs without the optimizers",
        "",
        "Subprocess per run; widget trees (4,000 widgets per wave, all in parent/child "
        "cycles), the last 3 waves kept alive. Growth over the process's start RSS.",
        "",
    ]
    out += bench_memory(2 if q else 5, 0.25 if q else 1.0)

    out += [
        "",
        "### GC profiles vs CPython defaults",
        "",
        "Seed report: 2.8x GC efficiency. Efficiency here = objects freed per ms of GC "
        "pause (gc.callbacks timing), on a workload that makes only cyclic garbage next "
        "to a 200k-object live heap; thresholds only (no periodic collection). "
        "Subprocess per run.",
        "",
    ]
    out += bench_gc_profiles(1 if q else 3, 0.25 if q else 1.0)

    out += ["", "### Background monitor cost", ""]
    out += bench_monitor_cpu(2.0 if q else 10.0, 1 if q else 3)
    out += ["", f"Total benchmark time: {time.perf_counter() - started:.1f} s", ""]
    text = "\n".join(out)
    print(text)
    if not q or not RESULTS.exists():
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
