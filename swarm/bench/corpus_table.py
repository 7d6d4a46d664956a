"""The corpus table: one row per app and side, as Markdown lines or a rich table.

Cells are ``median (min-max)`` over the repeats. ``work`` is units per
second relative to unguarded in the same round (every side of a round runs
back to back; for mypy: the inverse of its wall time), median and range of
those per-round ratios. The verdict column judges hivemind's sides only (see
:func:`hivemind.swarm.bench.corpus.verdict`); baselines get ``-``.
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
    "work vs unguarded",
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
                rows.append([app if first else "", side, *(["-"] * 6), err])
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
        "Bar (issue 11): a feasible app's median peak at or under its target and its work at "
        "least 95 % of the best baseline that also holds the target, never below the "
        "watchdog; an infeasible one flagged within 5 s in every run and its work at least "
        "97 % of unguarded. Work is compared round by round: each round runs every side "
        "of an app back to back, so the machine's drift over the whole run (often larger "
        "than any guard's cost) cancels; `work vs unguarded` is the median (min-max) of "
        "those per-round ratios, and the bar uses the median ratio to each baseline. A "
        "work criterion missed by that median is reported `within noise` (neither a pass "
        "nor a fail: this run cannot resolve it) unless so many rounds fell short that "
        "chance would do it at most once in 32 (a sign test: all of 5 rounds, 10 of 12; "
        "never with mypy's 3), which fails. Peak and flag criteria are never waived. "
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
