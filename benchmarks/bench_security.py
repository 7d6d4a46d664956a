"""Security: every attack of issue 14 that the test suite performs, tried and refused, counted.

Run: ``.venv/bin/python -m benchmarks.bench_security`` (full, ~1-2 min) or
``--quick`` (the state-folder attacks only). It runs the security tests with
pytest, with ``$HM_ATTACK_LOG`` set so each attack test records what it
tried and how much was refused (:mod:`tests.reliability.attacks`), and with
a JUnit XML report for each test's outcome; then it writes
``benchmarks/results/security.md``. The test files are
``tests/reliability/test_security.py`` and every ``tests/reliability/test_*.py``
that records attacks (so message-authentication tests join by calling
``record``). Ray-marked tests are left out (they are in the reliability
section). There is no baseline to alternate with: an attack either got
through or it did not, and every count comes from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from hivemind.swarm.bench.measure import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "security.md"
TESTS = ROOT / "tests" / "reliability"
QUICK = ["tests/reliability/test_host_state.py"]


# Message-authentication tests (issue 14 items 1 and 3) write their own JSON,
# ``{attack: {"tried": n, "executed": m}}``, to the file named by this variable.
BUS_FILE = "tests/reliability/test_bus_attacks.py"
BUS_ENV = "HM_SECURITY_RESULTS"


def test_files() -> list[str]:
    """The security test files: ``test_security.py``, the bus attacks, every file recording."""
    files = {"tests/reliability/test_security.py", BUS_FILE}
    for path in TESTS.glob("test_*.py"):
        if "attacks import record" in path.read_text(encoding="utf-8", errors="replace"):
            files.add(str(path.relative_to(ROOT)))
    return sorted(f for f in files if (ROOT / f).exists())


def _machine() -> str:
    m = machine_info()
    return f"{m['cores']} CPUs ({m['cpu']}) · {m['os']} · Python {m['python']}"


def _commit() -> str:
    r = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return (r.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def run_tests(files: list[str], log: Path, junit: Path, bus: Path) -> tuple[int, float]:
    """Run pytest on ``files``; return (exit code, wall seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["HM_ATTACK_LOG"] = str(log)  # not HIVEMIND_*: the tests' conftest clears those
    env[BUS_ENV] = str(bus)
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-m", "not ray", "-p", "no:cacheprovider",
        f"--junitxml={junit}", *files,
    ]  # fmt: skip
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    return code, time.perf_counter() - t0


def outcomes(junit: Path) -> dict[str, str]:
    """``file::test`` -> passed / failed / skipped, from the JUnit XML."""
    out: dict[str, str] = {}
    if not junit.exists():
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            out[name] = "failed"
        elif case.find("skipped") is not None:
            out[name] = "skipped"
        else:
            out[name] = "passed"
    return out


def records(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def bus_records(path: Path, tests: dict[str, str]) -> list[dict[str, object]]:
    """The bus attacks' own JSON as rows (refused = tried - executed); test = the module."""
    if not path.exists():
        return []
    module = Path(BUS_FILE).stem
    outcome = [v for k, v in tests.items() if k.startswith(f"{module}::")]
    test = f"{module}::*"
    tests[test] = "failed" if "failed" in outcome else ("passed" if outcome else "?")
    rows: list[dict[str, object]] = []
    for attack, r in sorted(json.loads(path.read_text()).items()):
        tried, executed = int(r["tried"]), int(r["executed"])
        rows.append({"finding": "1/3 forged bus messages", "attack": attack.replace("_", " "),
                     "tried": tried, "refused": tried - executed, "test": test})  # fmt: skip
    return rows


def _short(test: str) -> str:
    """``tests/reliability/test_x.py::test_y[p]`` -> ``test_x::test_y[p]``."""
    path, _, name = test.partition("::")
    return f"{Path(path).stem.removesuffix('.py')}::{name}"


def render(
    rows: list[dict[str, object]], tests: dict[str, str], wall_s: float, files: list[str],
    quick: bool,
) -> str:  # fmt: skip
    cmd = ".venv/bin/python -m benchmarks.bench_security" + (" --quick" if quick else "")
    lines = [
        "## Security",
        "",
        f"`{cmd}` · {time.strftime('%Y-%m-%d')} · commit {_commit()} · {_machine()} · "
        "measured while the machine was shared with other engineers' test runs.",
        "",
        "Each row is an attack from issue 14 performed by a test against the real "
        "embedded redis-server and the real CLI, with what it tried and how much was "
        "refused; the test then asserts that nothing got through. Tests: "
        + ", ".join(f"`{f}`" for f in files)
        + f" ({sum(not t.endswith('::*') for t in tests)} tests, {wall_s:.0f} s wall, "
        "Ray-marked tests excluded). "
        "No baseline: an attack either gets through or not.",
        "",
        "| finding | attack | tried | refused | got through | test |",
        "|---|---|---:|---:|---:|---|",
    ]
    by_finding: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in sorted(rows, key=lambda r: (str(r["finding"]), str(r["attack"]))):
        tried, refused = int(str(r["tried"])), int(str(r["refused"]))
        outcome = tests.get(_short(str(r["test"])), "?")
        by_finding[str(r["finding"])][0] += tried
        by_finding[str(r["finding"])][1] += refused
        lines.append(
            f"| {r['finding']} | {r['attack']} | {tried} | {refused} | {tried - refused} "
            f"| {outcome} |"
        )
    total_tried = sum(t for t, _ in by_finding.values())
    total_through = sum(t - r for t, r in by_finding.values())
    lines[4:4] = [
        f"Headline: security (issue 14): {total_tried} attack attempts over "
        f"{len(by_finding)} findings, against the real CLI and embedded Redis; "
        f"{total_through} got through",
        "",
    ]
    lines += ["", "| finding | tried | refused | got through |", "|---|---:|---:|---:|"]
    for finding, (tried, refused) in sorted(by_finding.items()):
        lines.append(f"| {finding} | {tried} | {refused} | {tried - refused} |")
    recorded = {_short(str(r["test"])) for r in rows}
    real = {t: o for t, o in tests.items() if not t.endswith("::*")}
    other = sorted(
        t for t in real if t not in recorded and f"{t.split('::')[0]}::*" not in recorded
    )
    counts: dict[str, int] = defaultdict(int)
    for outcome in real.values():
        counts[outcome] += 1
    lines += [
        "",
        f"Outcome of every test run: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped. Tests with no counted attack "
        f"(forgery barrages and checks that assert on their own): {len(other)}"
        + (": " + ", ".join(f"`{t}` {tests[t]}" for t in other) if other else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="the state-folder attacks only")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    files = QUICK if args.quick else test_files()
    with tempfile.TemporaryDirectory(prefix="hm-security-") as tmp:
        log, junit, bus = (Path(tmp) / n for n in ("attacks.jsonl", "junit.xml", "bus.json"))
        code, wall_s = run_tests(files, log, junit, bus)
        tests = outcomes(junit)
        rows = records(log) + bus_records(bus, tests)
    text = render(rows, tests, wall_s, files, args.quick)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    through = sum(int(str(r["tried"])) - int(str(r["refused"])) for r in rows)
    return 1 if code != 0 or through else 0


if __name__ == "__main__":
    raise SystemExit(main())
