"""Run every benchmark, then rebuild BENCHMARKS.md from their results.

``make bench`` runs ``.venv/bin/python -m benchmarks.run_all``: each
``benchmarks/bench_*.py`` module (found by glob, so new ones join without
an edit here) runs as ``python -m benchmarks.bench_NAME`` in its own
interpreter, in turn (never in parallel: timings on a shared machine are
noisy enough), and writes ``benchmarks/results/NAME.md``. Then BENCHMARKS.md
is rewritten as a fixed header followed by every ``results/*.md``.

For each benchmark it runs, ``run_all`` records the run in
``results/NAME.run.json`` (commit, whether the tree was clean, date,
machine, seconds, exit code) and heads that section of BENCHMARKS.md with
it, so every section says which commit and machine produced it. The file's
header names the commit of the run; a section measured at another commit
is marked so, never passed off as part of the run.

Options: ``--only NAME`` (repeatable) runs just those benchmarks;
``--no-run`` only rebuilds BENCHMARKS.md from the results already there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
OUTPUT = ROOT / "BENCHMARKS.md"

# Sections in the order a reader wants them; anything else follows alphabetically.
ORDER = ("corpus", "bench", "library", "foundation", "loop", "hooks", "reliability")

HEADER = """# Benchmarks

Every figure here was produced by a command in this repository, and each
section names that command and the machine it ran on (CPU, cores, OS,
Python and library versions). Rules:

- A figure is compared only with a baseline measured **in the same run, on
  the same machine**: the same workload without hivemind (or CPython's
  defaults, or bare construction). Ratios are against that baseline, never
  against numbers from elsewhere.
- Both sides of a comparison run alternately over several repeats; tables
  show the median and the min-max spread.
- Where the seed report claims a figure, the table says plainly whether it
  holds on our workload. We do not tune the workloads to flatter a claim.

Regenerate everything with `make bench` (`.venv/bin/python -m benchmarks.run_all`),
which reruns each `benchmarks/bench_*.py` and rewrites this file from
`benchmarks/results/*.md`. `hivemind bench` measures your own machine and,
with `--workload PATH.py:callable`, your own code.
"""


def discover() -> list[str]:
    """Module names of every ``benchmarks/bench_*.py``, sorted."""
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def code_version() -> tuple[str, bool]:
    """``(short commit, clean)``: the commit checked out; clean when no tracked file differs."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return commit, not dirty


def machine() -> str:
    """One line: CPU model, logical cores, RAM, OS and Python."""
    cpu = platform.processor() or "unknown CPU"
    ram = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        ram = f", {pages / 2**30:.1f} GiB RAM"
    except (OSError, ValueError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores{ram}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def record_run(name: str, seconds: float, code: int, results_dir: Path = RESULTS_DIR) -> None:
    """Write ``results/NAME.run.json``: what produced ``results/NAME.md``."""
    commit, clean = code_version()
    meta = {
        "commit": commit,
        "clean": clean,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "seconds": round(seconds),
        "exit_code": code,
    }
    (results_dir / f"{name}.run.json").write_text(json.dumps(meta, indent=1) + "\n")


def run_benchmark(module: str) -> int:
    """Run one benchmark module in a fresh interpreter; its exit code."""
    print(f"== {module}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", f"benchmarks.{module}"], cwd=ROOT)
    seconds = time.perf_counter() - started
    print(f"== {module}: exit {code} after {seconds:.0f} s", file=sys.stderr, flush=True)
    record_run(module.removeprefix("bench_"), seconds, code)
    return code


def _rank(path: Path) -> tuple[int, str]:
    return (ORDER.index(path.stem) if path.stem in ORDER else len(ORDER), path.stem)


def _run_line(meta: dict[str, Any] | None, commit: str) -> str:
    if meta is None:
        return "_Run: not recorded by `make bench` (no results/NAME.run.json)._"
    where = f"commit {meta['commit']}" + ("" if meta.get("clean") else " plus uncommitted changes")
    stale = "" if meta["commit"] == commit else f" (**not** this file's run at {commit})"
    failed = "" if meta.get("exit_code", 0) == 0 else f"; **exit code {meta['exit_code']}**"
    return (
        f"_Run: {where}{stale}, {meta['date']}, {meta['seconds']} s{failed}; "
        f"machine: {meta['machine']}._"
    )


def _meta(path: Path) -> dict[str, Any] | None:
    run = path.with_suffix(".run.json")
    try:
        data: dict[str, Any] = json.loads(run.read_text())
    except (OSError, ValueError):
        return None
    return data


def render(results_dir: Path = RESULTS_DIR) -> str:
    """BENCHMARKS.md's text: the header, then each results file headed by the run that made it."""
    paths = sorted(results_dir.glob("*.md"), key=_rank)
    metas = {p: _meta(p) for p in paths}
    commits = sorted({m["commit"] for m in metas.values() if m is not None})
    commit = max(
        commits,
        key=lambda c: sum(1 for m in metas.values() if m is not None and m["commit"] == c),
        default="unknown",
    )
    same = [p.stem for p in paths if (metas[p] or {}).get("commit") == commit]
    other = [p.stem for p in paths if p.stem not in same]
    run = f"Generated by `make bench` at commit {commit}: {len(same)} of {len(paths)} sections"
    run += " come from that run." if not other else f"; measured elsewhere: {', '.join(other)}."
    parts = [HEADER.rstrip(), run]
    for path in paths:
        text = path.read_text().strip()
        first, _, rest = text.partition("\n")
        parts.append(f"{first}\n\n{_run_line(metas[path], commit)}\n{rest}".rstrip())
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME")
    ap.add_argument("--no-run", action="store_true", help="only rebuild BENCHMARKS.md")
    ap.add_argument("--output", type=Path, default=OUTPUT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    modules = discover()
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        unknown = wanted - set(modules)
        if unknown:
            print(f"run_all: no such benchmark: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        modules = [m for m in modules if m in wanted]
    failed: list[str] = []
    if not args.no_run:
        failed = [m for m in modules if run_benchmark(m) != 0]
    args.output.write_text(render())
    print(f"wrote {args.output}", file=sys.stderr)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
