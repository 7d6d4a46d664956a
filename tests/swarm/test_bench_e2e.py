"""`hivemind bench --quick` end to end, as a real subprocess: every output, well-formed.

Asserts what was produced, never a timing or a verdict.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hivemind.swarm.bench.report import RESULTS_SCHEMA
from hivemind.swarm.bench.runner import PHASES

HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]
SECTIONS = (
    "### Corpus: apps we did not write, against the baselines (issue 11)",
    "### Summary vs the seed report",
    "### Swarm loop, guarded vs unguarded",
    "### Workload, in-process guard vs unguarded",
    "### Stress tests (the report's three)",
    "### Widget creation, reuse and render cache",
    "### GC profiles vs CPython defaults",
    "### Peak and residual memory, with vs without the optimizers",
    "### Charts",
)
SUMMARY_KEYS = {"metric", "before", "after", "improvement", "claim", "verdict", "source"}
VERDICTS = {"holds", "does not hold", "not measured", "no claim"}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_bench_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run(
        # One corpus app (the cheapest) keeps the corpus phase in the run; every app
        # runs guarded in tests/swarm/test_corpus.py.
        [*HIVEMIND, "bench", "--quick", "--corpus", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=390,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr

    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == RESULTS_SCHEMA
    assert data["command"].startswith("hivemind bench") and "--quick" in data["command"]
    for key in ("cpu", "cores", "python", "versions"):
        assert data["machine"][key]
    assert set(data["phases"]) == set(PHASES)
    for name, phase in data["phases"].items():
        # Ray and the embedded Redis are installed here: every phase, the swarm's too, must run.
        assert phase["status"] == "ok", (name, phase)
    for name in ("workload", "swarm"):
        sides = data["phases"][name]["sides"]
        assert len(sides) == 2 and "unguarded" in sides
        for s in sides.values():
            assert s["peak_rss_mb"]["n"] >= 2 and s["peak_rss_mb"]["median"] > 0
    corpus = data["phases"]["corpus"]
    assert [sm["app"] for sm in corpus["summaries"]] == ["cpu"]
    assert {"unguarded", "watchdog", "hivemind-local"} <= set(corpus["summaries"][0]["sides"])
    gc_modes = data["phases"]["gc"]["modes"]
    assert set(gc_modes) == {"default", "conservative", "balanced", "aggressive", "emergency"}
    stress = data["phases"]["stress"]["tests"]
    assert set(stress) == {"object_creation", "widget_lifecycle", "memory_pressure"}
    assert data["summary"]
    for row in data["summary"]:
        assert set(row) == SUMMARY_KEYS and row["verdict"] in VERDICTS

    md = (out / "report.md").read_text()
    assert md.startswith("## `hivemind bench` --quick")
    for section in SECTIONS:
        assert section in md
    assert "| metric | before | after | improvement | report claimed | verdict |" in md

    if importlib.util.find_spec("matplotlib") is not None:
        assert "workload_memory.png" in data["charts"]
        for chart in data["charts"]:
            png = (out / chart).read_bytes()
            assert png.startswith(b"\x89PNG") and len(png) > 1000
            assert f"({chart})" in md
    else:
        assert "hivemind-swarm[charts]" in proc.stderr

    # The terminal table in the report's shape, and the machine it ran on.
    assert "report claimed" in proc.stdout and "verdict" in proc.stdout
    assert "CPU-bound loop" in proc.stdout and "hivemind-local" in proc.stdout
    assert "CPU:" in proc.stdout and "Python" in proc.stdout
    assert "not available" not in proc.stdout
