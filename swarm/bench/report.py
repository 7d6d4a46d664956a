"""What ``hivemind bench`` writes: the summary table, ``results.json``, ``report.md``, charts.

The summary table has the seed report's shape (metric, before, after,
improvement) plus what the report claimed and a plain verdict: ``holds``,
``does not hold``, ``not measured`` (the phase did not run or is not in this
build) or ``no claim`` (a figure the report makes no claim about).

Charts (:mod:`hivemind.swarm.bench.charts`) need matplotlib, an optional
extra (``pip install 'hivemind-swarm[charts]'``); without it everything
else is still written and the note says how to get them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hivemind.swarm.bench.charts import CHARTS_HINT, write_charts
from hivemind.swarm.bench.runner import SWARM_NOT_AVAILABLE, BenchOptions, BenchResults, run_bench
from hivemind.swarm.errors import HivemindError

__all__ = [
    "CHARTS_HINT",
    "RESULTS_SCHEMA",
    "SummaryRow",
    "print_summary",
    "render_markdown",
    "run_bench_command",
    "summary_rows",
    "write_charts",
    "write_outputs",
]

RESULTS_SCHEMA = "hivemind-bench/1"
HOLDS, FAILS, NOT_MEASURED, NO_CLAIM = "holds", "does not hold", "not measured", "no claim"
DASH = "-"


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One line of the summary table."""

    metric: str
    before: str
    after: str
    improvement: str
    claim: str
    verdict: str
    source: str


def _f(s: dict[str, float], digits: int = 1, unit: str = "") -> str:
    """``median (min-max)`` of a spread dict, or just the median for one value."""
    med = f"{s['median']:,.{digits}f}{unit}"
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return med
    return f"{med} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def _guard_rows(phase: dict[str, Any] | None, name: str, target: float) -> list[SummaryRow]:
    src = "swarm" if name == "swarm" else "workload"
    what = "swarm loop" if name == "swarm" else "in-process guard, no swarm"
    claim_mem = "~1,700 -> <1,536 MB (peak under target)"
    if phase is None or phase.get("status") != "ok":
        if phase is None:
            why = "phase not run"
        elif phase.get("status") == "not_available":
            why = str(phase.get("reason", SWARM_NOT_AVAILABLE))
        else:
            why = f"error: {phase.get('error')}"
        return [SummaryRow(f"Memory usage ({what})", why, why, DASH, claim_mem, NOT_MEASURED, src)]
    sides = phase["sides"]
    guarded = next(s for s in sides if s != "unguarded")
    u, g = sides["unguarded"], sides[guarded]
    wl = phase["workload"]
    ub, gb = u["peak_rss_mb"]["median"], g["peak_rss_mb"]["median"]
    ut, gt = u["units_per_s"]["median"], g["units_per_s"]["median"]
    return [
        SummaryRow(
            f"Memory usage: peak RSS MB, {wl} ({what}), target {target:g} MB",
            _f(u["peak_rss_mb"]),
            _f(g["peak_rss_mb"]),
            f"{ub - gb:+,.0f} MB ({(ub - gb) / ub:.1%})" if ub else DASH,
            claim_mem,
            _verdict(gb <= target),
            src,
        ),
        SummaryRow(
            f"Time over target, s, {wl} ({what})",
            _f(u["time_over_target_s"], 2),
            _f(g["time_over_target_s"], 2),
            f"{u['time_over_target_s']['median'] - g['time_over_target_s']['median']:+.2f} s",
            "sustained operation under target",
            _verdict(g["time_over_target_s"]["median"] == 0.0),
            src,
        ),
        SummaryRow(
            f"Throughput, units/s, {wl} ({what})",
            _f(u["units_per_s"], 0),
            _f(g["units_per_s"], 0),
            f"{(gt - ut) / ut:+.1%}" if ut else DASH,
            "(none)",
            NO_CLAIM,
            src,
        ),
    ]


def summary_rows(results: BenchResults) -> list[SummaryRow]:
    """The report's table, row by row, from whichever phases ran."""
    ph = results.phases
    target = float(results.options["target_mb"])
    rows: list[SummaryRow] = []
    rows += _guard_rows(ph.get("swarm"), "swarm", target)
    rows += _guard_rows(ph.get("workload"), "workload", target)

    gc_ = ph.get("gc")
    if gc_ and gc_.get("status") == "ok":
        best = gc_["best_profile"]
        d, b = gc_["modes"]["default"], gc_["modes"][best]
        eff = b["efficiency_vs_default"]
        rows.append(
            SummaryRow(
                f"GC efficiency: objects freed per ms of GC pause, best profile ({best}) "
                "vs CPython defaults",
                _f(d["per_ms"], 0),
                _f(b["per_ms"], 0),
                f"{eff:.2f}x",
                "2.8x efficiency",
                _verdict(eff >= 2.8),
                "gc",
            )
        )
    w = ph.get("widgets")
    if w and w.get("status") == "ok":
        c = w["creation_ms_per_1000"]
        before, after = c["unpooled"]["median"], c["pooled"]["median"]
        gain = (before - after) / before if before else 0.0
        rows.append(
            SummaryRow(
                "Widget creation: ms per 1,000 widgets, unpooled vs ObjectPool",
                _f(c["unpooled"], 2),
                _f(c["pooled"], 2),
                f"{gain:.0%} faster" if gain >= 0 else f"{-gain:.0%} slower",
                "100 -> 35 ms (65 % faster)",
                _verdict(gain >= 0.65),
                "widgets",
            )
        )
        by_key = {r["key"]: r for r in w["reuse"]}
        lv = by_key["rerender_all"]
        rows.append(
            SummaryRow(
                "Object reuse: pool reuse rate, list view at 30 fps",
                "0.0%",
                f"{_pct(lv['reuse_rate'])} ({lv['reused']}/{lv['acquired']})",
                f"{lv['reuse_rate']:.1%} of acquisitions reused",
                "0 % -> 85 %",
                _verdict(lv["reuse_rate"] >= 0.85),
                "widgets",
            )
        )
        for r in w["reuse"]:
            rows.append(
                SummaryRow(
                    f"Render cache hit rate: {r['label']}",
                    DASH,
                    f"{_pct(r['hit_rate'])} ({r['hits']}/{r['lookups']})",
                    DASH,
                    "90 %+",
                    _verdict(r["hit_rate"] >= 0.9),
                    "widgets",
                )
            )
    st = ph.get("stress")
    if st and st.get("status") == "ok":
        t = st["tests"]
        oc, wl, mp = t["object_creation"], t["widget_lifecycle"], t["memory_pressure"]
        peak_bound = 1400.0 * target / 1536.0
        rows += [
            SummaryRow(
                f"Object creation stress ({oc['metrics']['objects']['median']:,.0f} objects): "
                "residual RSS MB",
                DASH,
                _f(oc["metrics"]["residual_mb"], 2),
                DASH,
                "< 50 MB residual",
                _verdict(oc["metrics"]["residual_mb"]["median"] < 50),
                "stress",
            ),
            SummaryRow(
                "Object creation stress: success rate",
                DASH,
                _pct(oc["metrics"]["success_rate"]["median"]),
                DASH,
                "95 %+",
                _verdict(oc["metrics"]["success_rate"]["median"] >= 0.95),
                "stress",
            ),
            SummaryRow(
                f"Widget lifecycle stress ({wl['metrics']['widgets']['median']:,.0f} widgets): "
                "RSS growth MB",
                DASH,
                _f(wl["metrics"]["growth_mb"], 2),
                DASH,
                "< 20 MB growth",
                _verdict(wl["metrics"]["growth_mb"]["median"] < 20),
                "stress",
            ),
            SummaryRow(
                "Widget lifecycle stress: cleanup efficiency",
                DASH,
                _pct(wl["metrics"]["cleanup_efficiency"]["median"]),
                DASH,
                "98 %",
                _verdict(wl["metrics"]["cleanup_efficiency"]["median"] >= 0.98),
                "stress",
            ),
            SummaryRow(
                f"Memory pressure stress ({mp['metrics']['cycles']['median']:.0f} cycles): "
                "peak RSS MB",
                DASH,
                _f(mp["metrics"]["peak_mb"], 1),
                DASH,
                f"< 1,400 MB at a 1,536 MB target (< {peak_bound:,.0f} MB here), STABLE",
                _verdict(
                    mp["metrics"]["peak_mb"]["median"] < peak_bound
                    and all(s == "STABLE" for s in mp["metrics"]["stability"])
                ),
                "stress",
            ),
        ]
    m = ph.get("memory")
    if m and m.get("status") == "ok":
        wo, wi = m["sides"]["without"], m["sides"]["with"]
        d_res = wo["residual_mb"]["median"] - wi["residual_mb"]["median"]
        d_peak = wo["peak_mb"]["median"] - wi["peak_mb"]["median"]
        rows += [
            SummaryRow(
                "Widget trees: peak RSS growth MB, defaults vs adaptive optimizers",
                _f(wo["peak_mb"]),
                _f(wi["peak_mb"]),
                f"{d_peak:+.1f} MB",
                "(none)",
                NO_CLAIM,
                "memory",
            ),
            SummaryRow(
                "Widget trees: residual RSS MB after work, defaults vs optimizers",
                _f(wo["residual_mb"]),
                _f(wi["residual_mb"]),
                f"{d_res:+.1f} MB",
                "(none)",
                NO_CLAIM,
                "memory",
            ),
        ]
    return rows


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    v = machine["versions"]
    return [
        f"CPU: {machine['cpu']}, {machine['cores']} logical cores",
        f"OS: {machine['os']} ({machine['libc']})",
        f"Python {machine['python']} ({machine['implementation']}), GC thresholds at start "
        f"{tuple(machine['gc_thresholds'])}",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]


def _corpus_ok(results: BenchResults) -> dict[str, Any] | None:
    c = results.phases.get("corpus")
    return c if c and c.get("status") == "ok" else None


def print_summary(results: BenchResults, console: Console) -> None:
    """The corpus table (the headline), the seed report's table and machine info."""
    from hivemind.swarm.bench.corpus_table import rich_table

    corpus = _corpus_ok(results)
    if corpus is not None:
        plan = corpus["plan"]
        console.print(
            rich_table(
                corpus["summaries"],
                f"corpus: {plan['repeats']} repeat(s) x {plan['seconds']:g} s per side; "
                f"swarm sides: {corpus['swarm']}",
            )
        )
    rows = summary_rows(results)
    table = Table(title=results.command, show_lines=False)
    for col in ("metric", "before", "after", "improvement", "report claimed", "verdict"):
        table.add_column(col, overflow="fold")
    colour = {HOLDS: "green", FAILS: "red", NOT_MEASURED: "yellow", NO_CLAIM: "dim"}
    for r in rows:
        table.add_row(
            r.metric,
            r.before,
            r.after,
            r.improvement,
            r.claim,
            f"[{colour[r.verdict]}]{r.verdict}[/]",
        )
    console.print(table)
    for line in _machine_lines(results.machine):
        console.print(line, markup=False)
    for name, message in results.errors.items():
        console.print(f"[red]phase {name} failed:[/] {message}")
    swarm = results.phases.get("swarm")
    if swarm and swarm.get("status") == "not_available":
        console.print(str(swarm["reason"]), markup=False)
    console.print(
        f"total {results.duration_s:.1f} s; figures are median (min-max) over the repeats",
        markup=False,
    )


# -- report.md ---------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def render_markdown(results: BenchResults) -> str:
    """``report.md``: a ``benchmarks/results/*.md`` section (## heading, ### parts)."""
    o, ph = results.options, results.phases
    out = [
        f"## `hivemind bench`{' --quick' if o['quick'] else ''}: the corpus and the seed "
        "report's figures",
        "",
        f"Command: `{results.command}`",
        "",
        *(f"- {line}" for line in _machine_lines(results.machine)),
        f"- Started {results.started_at}, took {results.duration_s:.1f} s",
        "",
        "Figures: median (min-max) over the repeats; both sides of each comparison run in the "
        "same run, alternating which goes first. Verdicts compare our median with the seed "
        "report's claim; we do not tune the workloads to flatter it.",
        "",
    ]
    out += _md_corpus(ph.get("corpus"))
    out += ["", "### Summary vs the seed report", ""]
    rows = summary_rows(results)
    out += _md_table(
        ["metric", "before", "after", "improvement", "report claimed", "verdict"],
        [[r.metric, r.before, r.after, r.improvement, r.claim, r.verdict] for r in rows],
    )
    for name, message in results.errors.items():
        out += ["", f"**Phase `{name}` failed:** {message}"]
    out += _md_guard("swarm", "Swarm loop, guarded vs unguarded", ph.get("swarm"))
    out += _md_guard("workload", "Workload, in-process guard vs unguarded", ph.get("workload"))
    out += _md_stress(ph.get("stress"))
    out += _md_widgets(ph.get("widgets"))
    out += _md_gc(ph.get("gc"))
    out += _md_memory(ph.get("memory"))
    out += ["", "### Charts", ""]
    if results.charts:
        out += [f"![{c}]({c})" for c in results.charts]
    else:
        out.append(results.charts_note or "No charts: no guarded run produced a timeline.")
    return "\n".join(out) + "\n"


def _skipped(phase: dict[str, Any] | None) -> list[str] | None:
    if phase is None:
        return ["Not run (not in `--phases`)."]
    if phase.get("status") == "not_available":
        return [str(phase.get("reason", SWARM_NOT_AVAILABLE))]
    if phase.get("status") == "error":
        return [f"Failed: {phase.get('error')}"]
    return None


def _md_guard(name: str, title: str, phase: dict[str, Any] | None) -> list[str]:
    out = ["", f"### {title}", ""]
    skipped = _skipped(phase)
    if skipped or phase is None:
        return out + (skipped or [])
    out += [
        f"Workload `{phase['workload']}`, {phase['repeats']} repeats of {phase['seconds']:g} s "
        f"per side. Guard: {phase['guard']}.",
        "",
    ]
    if phase["workload"] == "demo":
        out += [
            "`demo` holds memory a guard can take back (a long-TTL render cache, pooled "
            "buffers, cyclic garbage under raised GC thresholds). Memory held by live "
            "objects cannot be freed by any guard: measure your own app with "
            "`--workload PATH.py:callable`.",
            "",
        ]
    rows = []
    for side, s in phase["sides"].items():
        rows.append(
            [
                side,
                _f(s["peak_rss_mb"]),
                _f(s["time_over_target_s"], 2),
                _f(s["units_per_s"], 0),
                _f(s["decisions"], 0),
                _f({k: v / 2**20 if k != "n" else v for k, v in s["bytes_freed"].items()}, 1),
                _f(s["latency_ms"], 1) if s["latency_ms"]["n"] else DASH,
            ]
        )
    out += _md_table(
        [
            "side",
            "peak RSS MB",
            "time over target s",
            "units/s",
            "decisions",
            "MB freed",
            "reaction latency ms",
        ],
        rows,
    )
    return out


def _md_corpus(phase: dict[str, Any] | None) -> list[str]:
    from hivemind.swarm.bench.corpus_table import corpus_markdown

    skipped = _skipped(phase)
    if skipped or phase is None:
        return ["### Corpus: apps we did not write, against the baselines", "", *(skipped or [])]
    return corpus_markdown(phase)


def _md_stress(phase: dict[str, Any] | None) -> list[str]:
    out = ["", "### Stress tests (the report's three)", ""]
    skipped = _skipped(phase)
    if skipped or phase is None:
        return out + (skipped or [])
    out += [
        f"Fresh interpreter per repeat, {phase['repeats']} repeat(s). RSS of a process "
        "running only the test: these bound the library's own overhead, not an app's size.",
        "",
    ]
    rows = []
    for name, t in phase["tests"].items():
        figures = ", ".join(f"{k} {_stress_figure(v)}" for k, v in t["metrics"].items())
        bounds = ", ".join(f"{k} {b}" for k, b in t["bounds"].items())
        rows.append([name, figures, bounds, "passed" if t["passed"] else "FAILED"])
    return out + _md_table(["test", "figures", "bounds", "result"], rows)


def _stress_figure(v: Any) -> str:
    if not isinstance(v, dict):
        return "/".join(map(str, v))
    integral = all(float(v[k]).is_integer() for k in ("median", "min", "max"))
    return _f(v, 0 if integral else 2)


def _md_widgets(phase: dict[str, Any] | None) -> list[str]:
    out = ["", "### Widget creation, reuse and render cache", ""]
    skipped = _skipped(phase)
    if skipped or phase is None:
        return out + (skipped or [])
    c = phase["creation_ms_per_1000"]
    base = c["unpooled"]["median"]
    labels = {
        "unpooled": "construct state+props, render",
        "pooled": "ObjectPool state+props, render",
        "managed": "ManagedWidget (pools+registry+cache), render",
    }
    out += _md_table(
        ["side", "ms per 1,000 widgets", "vs unpooled"],
        [[labels[k], _f(v, 2), f"{v['median'] / base:.2f}x"] for k, v in c.items()],
    )
    out += ["", f"Reuse and cache over {phase['frames']} frames at 30 fps, manager defaults.", ""]
    out += _md_table(
        ["workload", "pool reuse rate", "render cache hit rate", "cache size / max"],
        [
            [
                r["label"],
                f"{_pct(r['reuse_rate'])} ({r['reused']}/{r['acquired']})",
                f"{_pct(r['hit_rate'])} ({r['hits']}/{r['lookups']})",
                f"{r['cache_size']}/{r['cache_max']}",
            ]
            for r in phase["reuse"]
        ],
    )
    return out


def _md_gc(phase: dict[str, Any] | None) -> list[str]:
    out = ["", "### GC profiles vs CPython defaults", ""]
    skipped = _skipped(phase)
    if skipped or phase is None:
        return out + (skipped or [])
    out += [
        f"Efficiency = {phase['efficiency']}, cyclic garbage next to a 200k-object live heap, "
        f"thresholds only; subprocess per run, {phase['repeats']} repeat(s).",
        "",
    ]
    rows = [
        [
            f"{m} {tuple(d['thresholds'])}",
            _f(d["collections"], 0),
            _f(d["pause_ms"], 1),
            _f(d["pause_max_ms"], 1),
            _f(d["per_ms"], 0),
            f"{d['efficiency_vs_default']:.2f}x",
            _f(d["peak_mb"], 1),
            _f(d["work_s"], 2),
        ]
        for m, d in phase["modes"].items()
    ]
    return out + _md_table(
        [
            "thresholds",
            "collections",
            "GC pause ms",
            "max pause ms",
            "freed per ms",
            "vs default",
            "peak RSS growth MB",
            "work s",
        ],
        rows,
    )


def _md_memory(phase: dict[str, Any] | None) -> list[str]:
    out = ["", "### Peak and residual memory, with vs without the optimizers", ""]
    skipped = _skipped(phase)
    if skipped or phase is None:
        return out + (skipped or [])
    labels = {
        "without": "CPython defaults, no optimizers",
        "with": "adaptive GC monitor + emergency_optimize at end",
    }
    return out + _md_table(
        ["side", "peak RSS growth MB", "residual RSS MB", "work s"],
        [
            [labels[k], _f(s["peak_mb"]), _f(s["residual_mb"]), _f(s["work_s"], 2)]
            for k, s in phase["sides"].items()
        ],
    )


def write_outputs(results: BenchResults, out: Path) -> dict[str, Path]:
    """Write charts, ``results.json`` and ``report.md`` into ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    results.charts, results.charts_note = write_charts(results, out)
    data = {"schema": RESULTS_SCHEMA, **results.as_dict()}
    data["summary"] = [asdict(r) for r in summary_rows(results)]
    paths = {"results": out / "results.json", "report": out / "report.md"}
    paths["results"].write_text(json.dumps(data, indent=2) + "\n")
    paths["report"].write_text(render_markdown(results))
    for c in results.charts:
        paths[c] = out / c
    return paths


def run_bench_command(options: BenchOptions, *, as_json: bool = False) -> BenchResults:
    """What ``hivemind bench`` does: run, write every output, print the table or JSON.

    Progress and notes go to stderr, the table (or the JSON) to stdout.
    Raises :class:`HivemindError` (exit 1) after writing the outputs when a
    phase failed, and :class:`UsageError` (exit 2) for a bad workload spec.
    """
    err = Console(stderr=True)
    # Piped output is not a terminal: give the table room instead of rich's 80 columns.
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 180)
    results = run_bench(options, console=err)
    paths = write_outputs(results, options.out)
    if as_json:
        print(paths["results"].read_text(), end="")
    else:
        print_summary(results, out)
        out.print(
            f"wrote {', '.join(str(p) for p in paths.values())}", markup=False, highlight=False
        )
    if results.charts_note:
        err.print(results.charts_note, markup=False)
    if results.errors:
        failed = "; ".join(f"{k}: {v}" for k, v in results.errors.items())
        raise HivemindError(f"bench wrote {options.out} but a phase failed: {failed}")
    return results
