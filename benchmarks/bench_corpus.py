"""The corpus of apps we did not write, against every baseline (issue 11).

Run: ``.venv/bin/python -m benchmarks.bench_corpus [--quick]``. Starts its
own swarm (real local Ray, embedded redis-server) in a temporary state
folder unless one is running in the project, runs every corpus app
(:mod:`hivemind.swarm.bench.corpus`) unguarded, under the ten-line watchdog,
under hivemind's in-process guard with no swarm, and guarded by the swarm
(plus collector-only vs discovered caches for the memo-cache and
fragmentation apps), alternating, then judges the work criteria on same-core pairs
(:mod:`hivemind.swarm.bench.corpus_pairs`: each hivemind side and a
baseline at once, pinned to one core), and writes
``benchmarks/results/corpus.md`` (and the raw runs to ``corpus.json``). The
full mode takes about 35-40 minutes on a 2-core machine, half of it the
pairs (``--pairs 0`` leaves them out); ``--quick`` (1 repeat of 2 s, no
mypy, no pairs) about two and does not overwrite an existing full result. ``--apps tui,batch
--repeats 15`` runs some apps with more rounds (to resolve a work
difference the full run calls "within noise"); it writes only to an
``--out`` given with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.run_all import code_version
from hivemind.swarm.bench.corpus import CORPUS, FULL, QUICK, corpus_phase, summarize
from hivemind.swarm.bench.corpus_table import corpus_markdown
from hivemind.swarm.bench.measure import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "corpus.md"


def _commit() -> str:
    """The commit checked out, "(with uncommitted changes)" when code differs (not the
    results, BENCHMARKS.md and README figures the benchmarks write: see ``run_all``)."""
    commit, clean = code_version()
    return commit + ("" if clean else " (with uncommitted changes)")


def headline(record: dict[str, Any]) -> str:
    """README's figure: how many apps each hivemind side met the bar on, vs the watchdog."""
    sums = record["summaries"]
    n = len(sums)

    def met(side: str) -> str:
        v = [sm["verdicts"].get(side, "") for sm in sums]
        clear = sum(1 for x in v if x == "meets the bar")
        noisy = sum(1 for x in v if x.startswith("within noise"))
        failing = sum(1 for x in v if x.startswith("fails"))
        more = [f"+{noisy} within noise"] * bool(noisy) + [f"{failing} failing"] * bool(failing)
        return f"{clear} of {n}" + (f" ({', '.join(more)})" if more else "")

    feasible = [sm for sm in sums if sm["feasible"]]
    held = sum(
        1
        for sm in feasible
        if (w := sm["sides"].get("watchdog"))
        and w["peak_rss_mb"]["n"]
        and w["peak_rss_mb"]["median"] <= sm["target_mb"]
    )
    return (
        f"Headline: on the corpus of {n} app{'s' * (n != 1)} we did not write "
        f"({record['plan']['repeats']} repeats, same run), hivemind with the swarm meets "
        f"issue 11's bar on "
        f"{met('hivemind-swarm')} and the in-process guard on {met('hivemind-local')}; "
        f"the ten-line watchdog holds the target on {held} of {len(feasible)} "
        "feasible apps."
    )


def render(record: dict[str, Any]) -> str:
    """``corpus.md`` from a record (``corpus_phase``'s, plus the ``meta`` main adds)."""
    meta = record["meta"]
    some = len(record["apps"]) < len(CORPUS) or record["plan"]["repeats"] != FULL.repeats
    lines = [
        "## Corpus, more rounds of some apps (issue 11)"
        if some
        else "## Corpus: apps we did not write (issue 11)",
        "",
        headline(record),
        "",
        f"Command: `{meta['command']}` · commit {meta['commit']} · {meta['date']} · "
        f"took {record['took_s']:.0f} s"
        + (
            f" · verdicts and summaries recomputed from its raw runs at commit "
            f"{meta['rendered_at']} (`--render-only`)"
            if meta.get("rendered_at") and meta["rendered_at"] != meta["commit"]
            else ""
        ),
        "",
        f"Machine: {meta['machine']}. Measured while the machine was shared (load average "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after, on "
        f"{meta['cores']} cores): work figures are noisy, read the spread.",
        "",
        *corpus_markdown(record, heading="###"),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat of 2 s per side, no mypy")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (.md and .json)")
    ap.add_argument("--apps", default="", help="comma-separated app names (default: all)")
    ap.add_argument("--repeats", type=int, default=0, help="rounds (default: the plan's)")
    ap.add_argument(
        "--pairs", type=int, default=-1, help="rounds of same-core pairs (default: the plan's)"
    )
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite corpus.md from corpus.json, no runs"
    )
    args = ap.parse_args(argv)
    if args.render_only:  # the verdicts are recomputed from the raw runs
        record = json.loads(args.out.with_suffix(".json").read_text())
        apps = [a for a in CORPUS if a.name in {x["name"] for x in record["apps"]}]
        record["summaries"] = [summarize(a, record["runs"], record.get("pairs")) for a in apps]
        record["meta"]["rendered_at"] = _commit()
        args.out.write_text(render(record))
        return 0
    plan = QUICK if args.quick else FULL
    names = [n for n in args.apps.split(",") if n]
    unknown = sorted(set(names) - {a.name for a in CORPUS})
    if unknown or args.repeats < 0:
        ap.error(f"unknown app(s): {', '.join(unknown)}" if unknown else "--repeats must be >= 1")
    apps = tuple(a for a in CORPUS if not names or a.name in names)
    if args.repeats:
        plan = dataclasses.replace(plan, repeats=args.repeats, whole_run_repeats=None)
    if args.pairs >= 0:
        plan = dataclasses.replace(plan, pair_repeats=args.pairs)
    partial = bool(names or args.repeats or args.pairs >= 0)
    load_before = os.getloadavg()
    started = time.monotonic()

    def tick(what: str) -> None:
        print(f"  {time.monotonic() - started:6.0f} s  {what}", file=sys.stderr, flush=True)

    record = corpus_phase(plan, apps=apps, tick=tick)
    m = machine_info()
    record["meta"] = {
        "command": " ".join(
            [".venv/bin/python -m benchmarks.bench_corpus", *(argv or sys.argv[1:])]
        ),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}, "
        f"ray {m['versions']['ray']}",
        "cores": m["cores"],
        "load_before": load_before[0],
        "load_after": os.getloadavg()[0],
    }
    text = render(record)
    if (not args.quick or not args.out.exists()) and not (partial and args.out == RESULTS):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
