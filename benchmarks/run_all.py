"""Run every benchmark, then rebuild BENCHMARKS.md from their results.

``make bench`` runs ``.venv/bin/python -m benchmarks.run_all``: each
``benchmarks/bench_*.py`` module (found by glob, so new ones join without
an edit here) runs as ``python -m benchmarks.bench_NAME`` in its own
interpreter, in turn (never in parallel: timings on a shared machine are
noisy enough), and writes ``benchmarks/results/NAME.md``. Then BENCHMARKS.md
is rewritten as a fixed header followed by every ``results/*.md``.

Options: ``--only NAME`` (repeatable) runs just those benchmarks;
``--no-run`` only rebuilds BENCHMARKS.md from the results already there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

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


def run_benchmark(module: str) -> int:
    """Run one benchmark module in a fresh interpreter; its exit code."""
    print(f"== {module}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", f"benchmarks.{module}"], cwd=ROOT)
    print(
        f"== {module}: exit {code} after {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return code


def _rank(path: Path) -> tuple[int, str]:
    return (ORDER.index(path.stem) if path.stem in ORDER else len(ORDER), path.stem)


def render(results_dir: Path = RESULTS_DIR) -> str:
    """BENCHMARKS.md's text: the header, then each results file as it is."""
    parts = [HEADER.rstrip()]
    for path in sorted(results_dir.glob("*.md"), key=_rank):
        parts.append(path.read_text().strip())
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
