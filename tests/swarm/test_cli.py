"""The CLI's exit codes and one-line errors, in process (typer) and as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hivemind.swarm.cli.app import run
from hivemind.swarm.redis.server import EmbeddedRedis

HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]


def _one_line_error(text: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("hivemind: ")
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["swarm", "up", "--bogus"], 2),
        (["swarm", "up", "--target-mb", "abc"], 2),
        (["swarm", "up", "--target-mb", "-5"], 2),
        (["swarm", "up", "--target-mb", "1e400"], 2),
        (["swarm", "up", "--namespace", "bad ns ✓"], 2),
        (["swarm", "up", "--redis-url", "http://x"], 2),
        (["nosuch"], 2),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run([*argv, "--state-dir", str(tmp_path / "s")]) == code
    _one_line_error(capsys.readouterr().err)


def test_unreachable_redis_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["swarm", "up", "--redis-url", "redis://127.0.0.1:1/0", "--state-dir", str(tmp_path)]
    assert run(argv) == 1
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "cannot reach Redis" in err


def test_wrong_password_exits_1(
    password_server: tuple[EmbeddedRedis, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server, _ = password_server
    url = f"unix://:Zq9-not-it@{server.socket_path}"
    assert run(["swarm", "up", "--redis-url", url, "--state-dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "refused the credentials" in err and "Zq9-not-it" not in err


def test_status_and_down_without_a_swarm(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(["swarm", "status", "--state-dir", str(tmp_path)]) == 1
    _one_line_error(capsys.readouterr().err)
    assert run(["swarm", "down", "--state-dir", str(tmp_path)]) == 1
    _one_line_error(capsys.readouterr().err)


def test_unwritable_state_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    assert run(["swarm", "up", "--state-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "writable by other users" in err


def test_help_everywhere() -> None:
    for argv in (["--help"], ["swarm", "--help"], ["swarm", "up", "--help"]):
        assert run(argv) == 0


def test_real_subprocess_bad_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    proc = subprocess.run(
        [*HIVEMIND, "swarm", "up", "--nope"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2
    _one_line_error(proc.stderr)


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *HIVEMIND,
            "--debug",
            "swarm",
            "up",
            "--redis-url",
            "redis://127.0.0.1:1/0",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
