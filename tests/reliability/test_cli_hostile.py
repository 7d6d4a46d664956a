"""Hostile command lines: always exit 1 or 2 with one line on stderr, never a traceback.

Run in-process through :func:`hivemind.swarm.cli.app.run` for speed, plus a few
real subprocesses. Nothing here may start a swarm: every command that could
is pointed at a state folder *under a regular file* (``ENOTDIR``, which
fails even for root), so it fails before Redis or Ray start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hivemind.hooks.cli import main as hooks_main
from hivemind.swarm.cli.app import run

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))

NUMBERS = [
    "nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e309", "1e-320", "9" * 400, "0x10",
    "\uff11\uff12", "1_000", "", " ", "-", "--", "1,5",
]  # fmt: skip
WEIRD = [
    "a b c", "ünïcødé", "\u202e\u200b", "😀", "../../etc/passwd", "/dev/null", "-x", "--",
    "'", '"', "$(id)", "x" * 5000, "\t", "--debugx", "\u2028", "a\nb", "\x85",
]  # fmt: skip


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A state folder path that cannot exist: its parent is a regular file."""
    f = tmp_path / "a file"
    f.write_text("not a folder")
    return f / ".hivemind"


def _check(
    argv: list[str], capsys: pytest.CaptureFixture[str], ok: tuple[int, ...] = (1, 2)
) -> int:
    code = run(argv)
    err = capsys.readouterr().err
    assert code in ok, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, (argv, err)
    return code


def _hand_picked(blocked: Path, tmp_path: Path) -> list[list[str]]:
    s = ["--state-dir", str(blocked)]
    missing = str(tmp_path / "no such dir" / "ünï")
    missing_prog = str(tmp_path / "no such program")
    cases: list[list[str]] = []
    for n in NUMBERS:
        cases += [
            ["swarm", "up", "--target-mb", n, *s],
            ["swarm", "up", "--detach", "--target-mb", n, *s],
            ["run", "--target-mb", n, "--", missing_prog],
            ["session", "list", "--limit", n, *s],
        ]
    for w in WEIRD:
        cases += [
            ["swarm", "up", "--namespace", w, *s],
            ["swarm", "up", "--redis-url", w, *s],
            ["swarm", "up", "--session-id", w, *s],
            ["swarm", "status", "--state-dir", w + "/x"],
            ["swarm", "down", "--state-dir", str(blocked / w)],
            ["session", "show", w, *s],
            ["session", "restore", w, *s],
            ["session", "export", w, "--out", missing, *s],
            ["memory", "get", w, *s],
            ["run", "--namespace", w, "--", missing_prog],
        ]
    cases += [
        ["nope"],
        ["swarm", "up", "--no-such-flag"],
        ["swarm", "up", "\u2028", *s],  # echoed back as an extra argument: still one line
        ["swarm", "up", "a\nb", *s],
        ["swarm", "status", *s],
        ["swarm", "status", "--json", "--state-dir", missing],
        ["swarm", "down", "--state-dir", missing],
        ["swarm", "down", *s],
        ["run"],
        ["run", "--"],
        ["run", "--", str(tmp_path / "missing program")],
        ["run", "--", str(tmp_path)],  # a folder is not executable
        ["session", "list", *s],
        ["session", "show", "x", "--recent", "-5", *s],
        ["memory", "list", *s],
        ["memory", "search", "", *s],
        ["swarm", "up", "--redis-url", "redis://u:p@127.0.0.1:1/0", *s],
        ["swarm", "up", "--ray-address", "999.1.1.1:6379", *s],
    ]
    return cases


def test_hand_picked_hostile_arguments(
    blocked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _hand_picked(blocked, tmp_path)
    codes = [_check(argv, capsys) for argv in cases]
    assert not blocked.parent.is_dir()
    print(f"CLI hand-picked: {len(cases)} command lines, exits {sorted(set(codes))}")


ARG = st.one_of(
    st.sampled_from(NUMBERS + WEIRD),
    st.text(max_size=30),
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(["--target-mb", "--namespace", "--json", "--detach", "-n", "--limit", "-d"]),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    cmd=st.sampled_from(
        [
            ["swarm", "up"],
            ["swarm", "status"],
            ["swarm", "down"],
            ["session", "list"],
            ["session", "show"],
            ["session", "export"],
            ["memory", "list"],
            ["memory", "get"],
        ]
    ),
    args=st.lists(ARG, max_size=6),
)
def test_random_arguments(
    cmd: list[str], args: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    bad = tmp_path_factory.getbasetemp() / "hostile-file"
    bad.write_text("x")
    args = [a.replace("\x00", "") for a in args if a != "--debug"]
    argv = [*cmd, *args, "--state-dir", str(bad / ".hivemind")]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run(argv)
    text = err.getvalue()
    assert code in (1, 2), (argv, code, text)
    assert "Traceback" not in text
    assert len([ln for ln in text.splitlines() if ln.strip()]) == 1, (argv, text)


@pytest.mark.parametrize(
    "args",
    [
        ["pre-task", "--description", "x" * 100_000],
        ["post-edit", "--file", "/no/such/ünï file.py", "--memory-key", "😀" * 50],
        ["notify", "--level", "nan", "--message", "\u202e"],
        ["session-restore", "--session-id", "../../etc"],
        ["no-such-hook", "--what"],
        [],
    ],
)
def test_hooks_never_fail_the_agent(
    args: list[str], blocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = hooks_main([*args, "--state-dir", str(blocked), "--no-stdin"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, (args, code, err)
    strict = hooks_main([*args, "--state-dir", str(blocked), "--no-stdin", "--strict"])
    err = capsys.readouterr().err
    assert strict in (1, 2) or (strict == 0 and not args), (args, strict, err)
    assert "Traceback" not in err


def test_hook_messages_stay_one_line_each(
    blocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A flag name or a value echoed back in a warning or an error may hold a line break.
    for args in (
        ["pre-task", "--descr\u2028iption", "x"],
        ["session-restore", "--session-id", "a\u2028b\nc", "--strict"],
        ["no-such\u2029hook"],
    ):
        hooks_main([*args, "--state-dir", str(blocked), "--no-stdin"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert lines and all(ln.startswith("hivemind hooks: ") for ln in lines), (args, lines)


@pytest.mark.parametrize(
    "argv",
    [
        ["swarm", "up", "--target-mb", "nan"],
        ["swarm", "status", "--json"],
        ["run", "--", "/nonexistent program"],
        ["session", "show", "ünï code"],
        ["swarm", "up", "--detach", "--namespace", "bad name!"],
    ],
)
def test_real_subprocess(argv: list[str], blocked: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["HIVEMIND_STATE_DIR"] = str(blocked)
    r = subprocess.run(
        [HIVEMIND, *argv], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert r.returncode in (1, 2), r
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
