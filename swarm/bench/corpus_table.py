"""The corpus table: one row per app and side, as Markdown lines or a rich table.

Cells are ``median (min-max)`` over the repeats. ``work vs unguarded, solo``
is units per second relative to unguarded in the same round (every side of
a round runs back to back; for mypy: the inverse of its wall time), median
and range of those per-round ratios. The ``same core`` columns are the work
ratios of same-core pairs (:mod:`hivemind.swarm.bench.corpus_pairs`), which
the verdicts use when there are any; the unguarded row shows the control
pairs there (unguarded against itself). The verdict column judges
hivemind's sides only (see :func:`hivemind.swarm.bench.corpus.verdict`);
baselines get ``-``.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

__all__ = [
    "HEADER",
    "WATCHDOG_SOURCE",
    "corpus_markdown",
    "markdown_table",
    "rich_table",
    "table_rows",
]

HEADER = [
    "app (target)",
    "side",
    "peak RSS MB",
    "s over target",
    "work vs unguarded, solo",
    "work vs unguarded, same core",
    "work vs watchdog, same core",
    "GC pause p99 ms",
    "guard CPU % of a core",
    "reaction p99 ms (n)",
    "verdict",
]

WATCHDOG_SOURCE = """\
def start_watchdog(target_mb, every_s=0.05):
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def loop():
        while True:
            with open("/proc/self/statm") as f:
                rss_mb = int(f.read().split()[1]) * page_mb
            if rss_mb > 0.8 * target_mb:
                gc.collect()
                libc.malloc_trim(0)
            time.sleep(every_s)

    threading.Thread(target=loop, daemon=True).start()"""


def _f(s: dict[str, float], digits: int = 0, pct: bool = False) -> str:
    if not s.get("n", 1):
        return "-"
    k = 100.0 if pct else 1.0
    unit = " %" if pct else ""
    med = f"{s['median'] * k:,.{digits}f}"
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return med + unit
    return f"{med} ({s['min'] * k:,.{digits}f}-{s['max'] * k:,.{digits}f}){unit}"


def _work(side: dict[str, Any]) -> str:
    w = side["work_rel"]
    cell = _f({**w, "n": side["units_per_s"]["n"]}, 0, pct=True)
    if side.get("timed_out"):
        cell += f" ({side['timed_out']} timed out)"
    return cell


def _same_core(side: str, s: dict[str, Any], sm: dict[str, Any], base: str) -> str:
    if side == base and base in ("unguarded", "watchdog"):
        c = sm.get("control" if base == "unguarded" else "watchdog_control") or {}
        return f"control {_f(c, 1, pct=True)}" if c.get("n") else "-"
    got = s.get("same_core", {}).get(base)
    return _f(got, 1, pct=True) if got and got["n"] else "-"


def table_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    """The table's cells, row by row, from :func:`~hivemind.swarm.bench.corpus.summarize`'s."""
    rows: list[list[str]] = []
    for sm in summaries:
        first = True
        for side, s in sm["sides"].items():
            app = (
                f"{sm['label']} ({sm['target_mb']:g} MB{'' if sm['feasible'] else ', infeasible'})"
            )
            if s["errors"] and not s["units_per_s"]["n"]:
                err = f"error: {s['errors'][0]}"
                rows.append([app if first else "", side, *(["-"] * (len(HEADER) - 3)), err])
                first = False
                continue
            react = "-"
            if s["reaction_ms"]["n"] or s["unanswered"]:
                n = int(s["reaction_ms"]["n"])
                react = f"{s['reaction_p99_ms']:.0f} ({n})" if n else "-"
                if s["unanswered"]:
                    react += f" ({s['unanswered']} unanswered)"
            rows.append(
                [
                    app if first else "",
                    side,
                    _f(s["peak_rss_mb"], 1),
                    _f(s["time_over_target_s"], 1),
                    _work(s),
                    _same_core(side, s, sm, "unguarded"),
                    _same_core(side, s, sm, "watchdog"),
                    _f(s["gc_pause_p99_ms"], 0),
                    _f(s["guard_cpu_pct"], 1),
                    react,
                    sm["verdicts"].get(side, "-"),
                ]
            )
            first = False
    return rows


def markdown_table(summaries: list[dict[str, Any]]) -> list[str]:
    """The table as Markdown lines."""
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(summaries):
        out.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    return out


def rich_table(summaries: list[dict[str, Any]], title: str) -> Table:
    """The table for a terminal; verdicts in green (meets the bar) or red."""
    table = Table(title=title)
    for col in HEADER:
        table.add_column(col, overflow="fold")
    for row in table_rows(summaries):
        table.add_row(*row[:-1], _coloured(row[-1]))
    return table


def _coloured(v: str) -> str:
    colour = {"meets the bar": "green", "-": "dim"}.get(v, "red")
    if v.startswith("within noise"):
        colour = "yellow"
    return f"[{colour}]{v}[/]"


def _work_text(plan: dict[str, Any]) -> list[str]:
    pairs = int(plan.get("pair_repeats") or 0)
    solo = (
        "Solo rounds: each round runs every side of an app back to back, so the "
        "machine's drift over the whole run cancels; `work vs unguarded, solo` is the "
        "median (min-max) of those per-round ratios."
    )
    if not pairs:
        return [
            solo + " The bar uses the median ratio to each baseline. A work criterion "
            "missed by that median is reported `within noise` (neither a pass nor a fail: "
            "this run cannot resolve it) unless so many rounds fell short that chance would "
            "do it at most once in 32 (a sign test: all of 5 rounds, 10 of 12), which fails."
        ]
    return [
        f"Work is judged on same-core pairs ({pairs} rounds): a hivemind side and a "
        "baseline run at the same time, both pinned to one core, each in its own session "
        "(so the scheduler shares the core between the two processes, not their threads), "
        "measuring the same seconds. On this shared machine a core's speed wanders by more "
        "than any guard costs (two identical unguarded runs on the two cores at once did "
        "0.63-1.51x each other's work); two processes on one core see the same core at "
        "the same moments, and the scheduler hands it back and forth every few "
        "milliseconds. The `same core` columns are the median (min-max) of the pairs' "
        "work ratios (mypy: the inverse ratio of CPU seconds for one whole check). The "
        "control, unguarded against itself, is the instrument's resolution in the same "
        "run: a shortfall no larger than the control's stray from 100 % (at least 1 %) is "
        "`within noise`, a larger one fails. Against the watchdog the control is the "
        "watchdog against itself (feasible apps): where both sides collect, a pair is a "
        "coarser instrument than where neither does. Each child of a pair gets half the core, so "
        "time-based costs (a guard's or the watchdog's polling) weigh twice as much per "
        "unit of work as alone: peaks, pauses and reactions come from the solo runs.",
        "",
        solo + " Shown for reference; the verdicts do not use them when pairs ran.",
    ]


def corpus_markdown(record: dict[str, Any], heading: str = "###") -> list[str]:
    """The corpus section of a report: what ran, the table, the watchdog's code, notes."""
    plan = record["plan"]
    out = [
        f"{heading} Corpus: apps we did not write, against the baselines (issue 11)",
        "",
        f"Each side of each app ran {plan['repeats']} time(s), {plan['seconds']:g} s per run "
        "(mypy: one whole check per run"
        + (f", {plan['whole_run_repeats']} repeats" if plan.get("whole_run_repeats") else "")
        + ", stopped after "
        f"{plan['whole_run_cap_s']:g} s or {plan.get('whole_run_factor', 3):g}x the median "
        "wall time of its unguarded child, start-up included, whichever is less), in a "
        "fresh interpreter, sides rotated every repeat. "
        f"Swarm sides: {record['swarm']}."
        + (f" Skipped: {', '.join(plan['skipped'])}." if plan["skipped"] else ""),
        "",
        "Sides: `unguarded`; `watchdog` (the ten-line thread below); `hivemind-local` "
        "(`hivemind.attach` with no swarm running); `hivemind-swarm` (guarded by a running "
        "swarm, as `hivemind run` starts an app); for the memo-cache and fragmentation apps "
        "also `collector-only` / `discovered-caches` (the swarm side with "
        "`HIVEMIND_DISCOVER=0` / `=1`).",
        "",
        *markdown_table(record["summaries"]),
        "",
        "Bar (issue 11): a feasible app's median peak at or under its target, its work at "
        "least 95 % of every baseline that also holds the target and never below the "
        "watchdog (at least 100 % of it, whether or not it holds); an infeasible one "
        "flagged within 5 s in every run and its work at least 97 % of unguarded.",
        "",
        *_work_text(plan),
        "",
        "Peak is the kernel's high-water mark (VmHWM) over the run; GC pauses are every "
        "collection in the app's process (`gc.callbacks`); guard CPU is the CPU time of the "
        "guard's own threads; reaction is from the app's last allocation before RSS was seen "
        "over the target to the start of the next full collection (unanswered: none came).",
        "",
        "The apps:",
        "",
        *[f"- **{a['label']}** (`{a['name']}`, target {a['target_mb']:g} MB"
          f"{'' if a['feasible'] else ', infeasible'}): {a['what']}" for a in record["apps"]],
        "",
        "The watchdog baseline (`hivemind.swarm.bench.watchdog`), as a user would write it:",
        "",
        "```python",
        WATCHDOG_SOURCE,
        "```",
    ]  # fmt: skip
    return out
