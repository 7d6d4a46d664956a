"""`hivemind session ...` and `hivemind memory ...` through the real CLI entry."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.hooks.cli import main as hooks_main
from hivemind.swarm.cli.app import run
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SessionStore, Path]]:
    state = tmp_path / "state"
    ns = f"c{uuid.uuid4().hex[:8]}"
    for key in ("HIVEMIND_REDIS_URL", "HIVEMIND_SESSION_ID", "CLAUDE_PROJECT_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HIVEMIND_STATE_DIR", str(state))
    monkeypatch.setenv("HIVEMIND_NAMESPACE", ns)
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(state).lease() as url:
        client = connect(url)
        try:
            yield SessionStore(client, Keys(ns)), state
        finally:
            client.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _fill(store: SessionStore) -> str:
    sid, _ = store.ensure("cli-s1", {"source": "swarm"})
    store.append(sid, "decision", {"reason": "rss above 0.9 of target", "level": "aggressive"})
    store.append(sid, "ack", {"bytes_freed": 2_000_000}, counters={"bytes_freed": 2_000_000})
    store.learned_record(sid, "collect:2", 2_000_000, 12.0)
    store.set_level(sid, "aggressive")
    return sid


def test_list_show_json_and_text(
    world: tuple[SessionStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = world
    sid = _fill(store)
    code, out, _ = cli(capsys, "session", "list", "--json")
    assert code == 0 and json.loads(out)[0]["session_id"] == sid
    code, out, _ = cli(capsys, "session", "show", sid, "--json")
    snap = json.loads(out)
    assert snap["level"] == "aggressive" and snap["counters"]["bytes_freed"] == 2_000_000
    assert snap["learned"]["collect:2"]["n"] == 1
    code, out, _ = cli(capsys, "session", "show", sid)
    assert code == 0 and "decisions 1" in out and "bytes freed 2.0 MB" in out and "collect:2" in out
    code, out, _ = cli(capsys, "session", "list")
    assert code == 0 and sid in out


def test_unknown_session_is_one_line_exit_1(
    world: tuple[SessionStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for sub in ("show", "restore"):
        code, out, err = cli(capsys, "session", sub, "ghost")
        assert code == 1 and out == ""
        assert err.strip() == f"hivemind: unknown session 'ghost' in namespace {world[0].keys.ns}"
    code, _, err = cli(capsys, "session", "export", "ghost", "--format", "csv")
    assert code == 1 and err.count("\n") == 1


def test_export_formats(
    world: tuple[SessionStore, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sid = _fill(world[0])
    code, out, _ = cli(capsys, "session", "export", sid, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and [e["kind"] for e in doc["events"]] == ["decision", "ack"]
    target = tmp_path / "s.csv"
    code, _, err = cli(capsys, "session", "export", sid, "--format", "csv", "--out", str(target))
    assert code == 0 and "exported 2 events" in err
    assert [r["kind"] for r in csv.DictReader(target.open())] == ["decision", "ack"]
    code, _, err = cli(capsys, "session", "export", sid, "--format", "xml")
    assert code == 2 and "json or csv" in err


def test_restore_without_swarm_is_a_dry_run(
    world: tuple[SessionStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _fill(world[0])
    code, out, _ = cli(capsys, "session", "restore", sid)
    assert code == 0
    assert "no swarm running" in out and "level aggressive, 1 learned actions" in out
    assert f"hivemind swarm up --session-id {sid}" in out
    code, out, _ = cli(capsys, "session", "restore", sid, "--json")
    doc = json.loads(out)
    assert doc["swarm_running"] is False and doc["plan"]["learned"]["collect:2"]["n"] == 1


def test_memory_get_list_search(
    world: tuple[SessionStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for key, f in (("swarm/bench/opt", "a.py"), ("swarm/gc/opt", "b.py"), ("notes/x", "c.py")):
        assert (
            hooks_main(
                ["post-edit", "--file", f, "--memory-key", key, "--session-id", "mem", "--no-stdin"]
            )
            == 0
        )
    assert (
        hooks_main(
            [
                "post-edit",
                "--file",
                "d.py",
                "--memory-key",
                "other",
                "--namespace",
                "team",
                "--session-id",
                "mem",
                "--no-stdin",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, out, _ = cli(capsys, "memory", "get", "swarm/bench/opt")
    entry = json.loads(out)
    assert code == 0 and entry["file"] == "a.py" and entry["session_id"] == "mem"
    assert set(entry) == {"file", "edited_at", "edit_id", "session_id"}
    code, out, err = cli(capsys, "memory", "get", "missing")
    assert code == 1 and "no memory entry 'missing'" in err
    code, out, _ = cli(capsys, "memory", "list", "--json")
    assert [(e["namespace"], e["key"]) for e in json.loads(out)] == [
        ("default", "notes/x"),
        ("default", "swarm/bench/opt"),
        ("default", "swarm/gc/opt"),
        ("team", "other"),
    ]
    code, out, _ = cli(capsys, "memory", "search", "swarm/*", "--json")
    assert [e["key"] for e in json.loads(out)] == ["swarm/bench/opt", "swarm/gc/opt"]
    code, out, _ = cli(capsys, "memory", "search", "D.PY", "--json")
    assert [e["key"] for e in json.loads(out)] == ["other"]
    code, out, _ = cli(capsys, "memory", "get", "other", "--namespace", "team")
    assert code == 0 and json.loads(out)["file"] == "d.py"


def test_real_process_unknown_session(world: tuple[SessionStore, Path]) -> None:
    exe = str(Path(sys.executable).with_name("hivemind"))
    r = subprocess.run(
        [exe, "session", "show", "ghost"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("hivemind: unknown session 'ghost'") and r.stderr.count("\n") == 1
