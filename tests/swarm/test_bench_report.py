"""The bench report writer: results.json, report.md, charts, with and without matplotlib.

The swarm loop (``hivemind.swarm.bench.effect``) is not part of these tests: where a
guarded run is needed, the test builds ``EffectRun`` objects by hand.
They are TEST INPUT for the report writer, not measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from hivemind.swarm.bench.effect import EffectRun
from hivemind.swarm.bench.measure import machine_info
from hivemind.swarm.bench.report import (
    CHARTS_HINT,
    RESULTS_SCHEMA,
    print_summary,
    summary_rows,
    write_outputs,
)
from hivemind.swarm.bench.runner import (
    SWARM_NOT_AVAILABLE,
    BenchOptions,
    BenchResults,
    run_bench,
    swarm_phase_from_runs,
)

REPORT_SECTIONS = (
    "### Summary vs the seed report",
    "### Swarm loop, guarded vs unguarded",
    "### Workload, in-process guard vs unguarded",
    "### Stress tests (the report's three)",
    "### Widget creation, reuse and render cache",
    "### GC profiles vs CPython defaults",
    "### Peak and residual memory, with vs without the optimizers",
    "### Charts",
)


def _fake_swarm_results(target: float = 100.0) -> BenchResults:
    runs = [
        EffectRun("unguarded", 150.0, 2.0, 1000, 5.0, [(0.0, 20.0), (2.5, 90.0), (5.0, 150.0)]),
        EffectRun(
            "guarded",
            95.0,
            0.0,
            900,
            5.0,
            [(0.0, 20.0), (2.5, 95.0), (2.7, 40.0), (5.0, 80.0)],
            [(2.5, "aggressive", "evict caches, collect", 55 * 2**20)],
            [40.0, 55.0, 61.0],
        ),
    ]
    res = BenchResults(
        command="test input",
        options={"target_mb": target, "quick": True, "workload": "demo"},
        machine=machine_info(),
        started_at="2026-01-01T00:00:00+00:00",
    )
    res.phases["swarm"] = {"status": "ok", **swarm_phase_from_runs("demo", 1, 5.0, runs)}
    return res


def test_swarm_runs_make_table_rows_json_md_and_charts(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = _fake_swarm_results()
    rows = summary_rows(res)
    mem = next(r for r in rows if r.source == "swarm" and r.metric.startswith("Memory usage"))
    assert (mem.before, mem.after, mem.verdict) == ("150.0", "95.0", "holds")
    over = next(r for r in rows if r.metric.startswith("Time over target"))
    assert over.verdict == "holds"
    paths = write_outputs(res, tmp_path)
    assert (tmp_path / "swarm_memory.png").stat().st_size > 1000
    assert (tmp_path / "swarm_latency.png").stat().st_size > 1000
    assert set(paths) >= {"results", "report", "swarm_memory.png", "swarm_latency.png"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["schema"] == RESULTS_SCHEMA
    assert data["charts"] == ["swarm_memory.png", "swarm_latency.png"]
    sides = data["phases"]["swarm"]["sides"]
    assert sides["guarded"]["latency_ms"]["median"] == 55.0
    assert sides["guarded"]["bytes_freed"]["median"] == 55 * 2**20
    md = (tmp_path / "report.md").read_text()
    assert "![swarm_memory.png](swarm_memory.png)" in md


def test_swarm_over_target_does_not_hold() -> None:
    res = _fake_swarm_results(target=90.0)
    mem = next(r for r in summary_rows(res) if r.source == "swarm")
    assert mem.verdict == "does not hold"


def test_swarm_not_available_is_said_in_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "hivemind.swarm.bench.effect", None)  # as if not in this build
    res = run_bench(BenchOptions(phases=("swarm",), out=tmp_path))
    assert res.phases["swarm"]["status"] == "not_available"
    assert res.phases["swarm"]["reason"].startswith(SWARM_NOT_AVAILABLE)
    write_outputs(res, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert SWARM_NOT_AVAILABLE in json.dumps(data["phases"]["swarm"])
    swarm_row = next(r for r in data["summary"] if r["source"] == "swarm")
    assert swarm_row["verdict"] == "not measured"
    assert SWARM_NOT_AVAILABLE in swarm_row["before"]
    md = (tmp_path / "report.md").read_text()
    assert md.count(SWARM_NOT_AVAILABLE) >= 2  # table row and its section
    console = Console(record=True, width=200)
    print_summary(res, console)
    assert SWARM_NOT_AVAILABLE in console.export_text()
    assert not any(name.startswith("swarm") for name in data["charts"])


def test_without_matplotlib_writes_the_rest_and_says_how(tmp_path: Path) -> None:
    """A child interpreter where ``import matplotlib`` fails (None in sys.modules)."""
    code = f"""
import sys
sys.modules['matplotlib'] = None
sys.modules['matplotlib.pyplot'] = None
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_bench_report import _fake_swarm_results
from hivemind.swarm.bench.report import write_outputs
res = _fake_swarm_results()
write_outputs(res, __import__('pathlib').Path({str(tmp_path)!r}))
print(res.charts_note)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert CHARTS_HINT in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["charts"] == [] and CHARTS_HINT in data["charts_note"]
    md = (tmp_path / "report.md").read_text()
    assert "pip install 'hivemind-swarm[charts]'" in md
    for section in ("### Summary vs the seed report", "### Swarm loop, guarded vs unguarded"):
        assert section in md


def test_run_all_discovers_benchmarks_and_renders_header(tmp_path: Path) -> None:
    from benchmarks import run_all

    assert {"bench_library", "bench_cli"} <= set(run_all.discover())
    (tmp_path / "library.md").write_text("## Library\n\nCommand: `x`\n")
    (tmp_path / "bench.md").write_text("## `hivemind bench`\n\nCommand: `y`\n")
    (tmp_path / "zzz.md").write_text("## Later\n")
    text = run_all.render(tmp_path)
    assert text.startswith("# Benchmarks\n")
    assert "same run, on\n  the same machine" in text
    assert text.index("## `hivemind bench`") < text.index("## Library") < text.index("## Later")
