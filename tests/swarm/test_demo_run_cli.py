"""`hivemind demo` and `hivemind run` as a user runs them: real subprocesses, real swarm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}


@pytest.mark.slow
@pytest.mark.ray
def test_demo_end_to_end(tmp_path: Path) -> None:
    """With no swarm running, the demo starts one, runs both sides, and leaves nothing."""
    proc = subprocess.run(
        [
            *HIVEMIND,
            "demo",
            "--seconds",
            "4",
            "--target-mb",
            "200",
            "--state-dir",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "unguarded: peak" in out and "demo summary" in out
    assert "decided:" in out and "bytes freed" in out


def test_run_passes_exit_code_and_guards(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import sys, time\n"
        "from hivemind.swarm.target.attach import current_runtime\n"
        "rt = current_runtime()\n"
        "print('guarded', rt is not None and rt.name, rt and rt.config.target_mb)\n"
        "sys.exit(7)\n"
    )
    proc = subprocess.run(
        [
            *HIVEMIND,
            "run",
            "--target-mb",
            "321",
            "--name",
            "my-app",
            "--state-dir",
            str(tmp_path / "st"),
            "--",
            sys.executable,
            str(app),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 7
    assert "guarded my-app 321.0" in proc.stdout


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["run"], 2, "no command given"),
        (["run", "--", "no-such-command-xyz"], 1, "command not found"),
        (["run", "--target-mb", "-1", "--", "true"], 2, "invalid target-mb"),
        (["run", "--name", "no spaces", "--", "true"], 2, "invalid --name"),
        (["demo", "--seconds", "0"], 2, "--seconds"),
    ],
)
def test_run_and_demo_bad_usage(argv: list[str], code: int, text: str) -> None:
    proc = subprocess.run(
        [*HIVEMIND, *argv], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in proc.stderr
