"""``hivemind bench`` (full, not --quick) as part of ``make bench``.

Run: ``.venv/bin/python -m benchmarks.bench_cli``. Runs the bench on the
demo workload with its default target, writes its outputs to
``bench-out/`` and copies ``report.md`` to ``benchmarks/results/bench.md``
(the section BENCHMARKS.md shows first). Takes a few minutes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hivemind.swarm.cli.app import run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bench.md"
OUT = ROOT / "bench-out"


def main() -> int:
    code = run(["bench", "--out", str(OUT)])
    report = OUT / "report.md"
    if report.exists():
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report, RESULTS)
        print(f"written to {RESULTS}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
