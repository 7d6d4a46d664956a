"""`--workload`: built-in workloads, user workloads by PATH.py:callable, and bad specs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hivemind.swarm.bench.workloads import (
    BUILTIN,
    check_workload,
    make_demo,
    parse_workload,
    run_workload_process,
)
from hivemind.swarm.cli.app import run
from hivemind.swarm.errors import UsageError

GOOD = """
import gc

def work(seconds, report):
    import time
    kept = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        kept.append(bytearray(256 * 1024))  # leaks 256 KB per unit
        n += 1
        report(n)
        time.sleep(0.005)
    return n

not_callable = 42

def crashes(seconds, report):
    raise RuntimeError("boom")

def returns_text(seconds, report):
    return "done"
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Path:
    path = tmp_path / "my_app.py"
    path.write_text(textwrap.dedent(GOOD))
    return path


def test_builtins_parse_and_paths_resolve(user_module: Path) -> None:
    assert {parse_workload(n).kind for n in BUILTIN} == {"builtin"}
    ws = check_workload(f"{user_module}:work")
    assert ws.kind == "path" and ws.path == user_module and ws.name == "work"
    assert ws.label == "my_app.py:work"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "bad --workload"),
        ("app.py", "bad --workload"),
        ("app.txt:run", "bad --workload"),
        ("{tmp}/missing.py:run", "workload file not found"),
        ("{mod}:nothere", "has no attribute 'nothere'"),
        ("{mod}:not_callable", "is a int, not a callable"),
        ("{bad}:run", "syntax error at line 2"),
        ("{raises}:run", "raised ImportError"),
    ],
)
def test_bad_specs_are_usage_errors(
    spec: str, message: str, tmp_path: Path, user_module: Path
) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\ndef run(:\n    pass\n")
    raises = tmp_path / "raises.py"
    raises.write_text("raise ImportError('needs numpy')\n")
    spec = spec.format(tmp=tmp_path, mod=user_module, bad=bad, raises=raises)
    with pytest.raises(UsageError, match=message):
        check_workload(spec)


def test_bad_workload_on_the_cli_is_one_line_and_exit_2(
    user_module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = run(["bench", "--workload", f"{user_module}:nothere", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hivemind: ") and "nothere" in lines[0]
    assert not out.exists()
    assert run(["bench", "--target-mb", "-1", "--out", str(out)]) == 2


def test_user_workload_runs_in_a_child_and_is_measured(
    user_module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["bench", "--workload", f"{user_module}:work", "--target-mb", "64", "--out", str(out)]
    code = run([*argv, "--phases", "workload", "--repeats", "1", "--seconds", "1.5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data == json.loads((out / "results.json").read_text())
    wl = data["phases"]["workload"]
    assert wl["status"] == "ok" and wl["workload"] == f"{user_module}:work"
    sides = wl["sides"]
    assert set(sides) == {"unguarded", "library-guarded"}
    assert sides["unguarded"]["units_per_s"]["median"] > 10
    # It leaks ~50 MB/s past a 64 MB target: unguarded it ends over the target.
    assert sides["unguarded"]["peak_rss_mb"]["median"] > 64
    assert len(wl["runs"]) == 2 and all(r["timeline"] for r in wl["runs"])
    assert data["options"]["workload"] == f"{user_module}:work"
    assert "--workload" in data["command"]


def test_crashing_workload_fails_the_phase_not_the_bench_process(
    user_module: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for attr, message in (("crashes", "RuntimeError: boom"), ("returns_text", "returned str")):
        argv = ["bench", "--workload", f"{user_module}:{attr}", "--out", str(out)]
        code = run([*argv, "--phases", "workload", "--repeats", "1", "--seconds", "0.5"])
        err = capsys.readouterr().err
        assert code == 1
        assert message in err.splitlines()[-1]
        data = json.loads((out / "results.json").read_text())
        assert data["phases"]["workload"]["status"] == "error"
        assert message in (out / "report.md").read_text()


def test_demo_grows_past_target_unguarded_and_the_guard_holds_it() -> None:
    unguarded = run_workload_process("demo", 2.0, 96.0, "none")
    guarded = run_workload_process("demo", 2.0, 96.0, "library")
    assert unguarded.error is None and guarded.error is None
    assert unguarded.units > 0 and guarded.units > 0
    assert unguarded.peak_rss_mb > 96.0 and unguarded.time_over_target_s > 0
    assert guarded.peak_rss_mb < unguarded.peak_rss_mb
    assert any(freed > 0 for *_, freed in guarded.decisions)
    assert guarded.latencies_ms


@pytest.mark.parametrize("name", ["widgets", "objects"])
def test_steady_builtins_return_units(name: str) -> None:
    seen: list[int] = []
    units = BUILTIN[name](0.2, seen.append)
    assert isinstance(units, int) and units > 0 and seen and seen[-1] == units


def test_make_demo_validates() -> None:
    with pytest.raises(ValueError):
        make_demo(0)
    assert make_demo(32.0)(0.2, lambda n: None) > 0
