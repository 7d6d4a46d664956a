"""Claude Code's stdin JSON, read safely, and `hooks install`."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import HIVEMIND, HookEnv

from hivemind.hooks.claude_code import HOOK_ENTRIES, install, read_stdin_json


def cc_payload(**over: object) -> bytes:
    doc: dict[str, object] = {
        "session_id": "3f1c2a9e-claude",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": "/tmp",
        "hook_event_name": "PostToolUse",
        "tool_name": "Edit",
        "tool_input": {"file_path": "/tmp/edited.py", "old_string": "a", "new_string": "b"},
        "tool_response": {"success": True},
        "tool_use_id": "toolu_01ABC",
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_post_tool_use_json_is_recorded_once(hook_env: HookEnv, server: redis.Redis) -> None:
    for _ in range(2):  # Claude Code retrying the same tool use
        r = hook_env.run("post-edit", "--memory-key", "edits/last", stdin=cc_payload())
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    keys = hook_env.keys
    sid = "3f1c2a9e-claude"
    (entry,) = server.xrange(keys.session_events(sid))
    data = json.loads(entry[1][b"data"])
    assert data["file"] == "/tmp/edited.py" and data["tool"] == "Edit"
    assert data["edit_id"] == "post-edit:toolu_01ABC"
    assert server.hget(keys.session(sid), "meta.source") == b"claude-code"
    mem = json.loads(server.hget(keys.memory("default"), "edits/last"))
    assert mem["edit_id"] == "post-edit:toolu_01ABC" and mem["session_id"] == sid


def test_task_and_session_start_json(hook_env: HookEnv, server: redis.Redis) -> None:
    pre = cc_payload(
        hook_event_name="PreToolUse",
        tool_name="Task",
        tool_input={
            "description": "profile memory",
            "prompt": "long prompt",
            "subagent_type": "perf",
        },
        tool_use_id="toolu_task",
    )
    assert hook_env.run("pre-task", stdin=pre).returncode == 0
    assert (
        hook_env.run("post-task", stdin=pre.replace(b"PreToolUse", b"PostToolUse")).returncode == 0
    )
    start = json.dumps(
        {
            "session_id": "3f1c2a9e-claude",
            "hook_event_name": "SessionStart",
            "source": "resume",
            "cwd": "/tmp",
        }
    )
    assert hook_env.run("session-start", stdin=start.encode()).returncode == 0
    evs = {
        f[b"kind"].decode(): json.loads(f[b"data"])
        for _, f in server.xrange(hook_env.keys.session_events("3f1c2a9e-claude"))
    }
    assert evs["pre-task"] == {
        "task_id": "toolu_task",
        "description": "profile memory",
        "agent_id": "perf",
    }
    assert evs["post-task"] == {"task_id": "toolu_task", "status": "completed"}
    assert evs["session-start"] == {"source": "resume"}


def test_flags_win_over_stdin(hook_env: HookEnv, server: redis.Redis) -> None:
    r = hook_env.run(
        "post-edit", "--file", "flag.py", "--session-id", "flagwins", stdin=cc_payload()
    )
    assert r.returncode == 0
    ((_, fields),) = server.xrange(hook_env.keys.session_events("flagwins"))
    data = json.loads(fields[b"data"])
    assert data["file"] == "flag.py" and data["claude_session_id"] == "3f1c2a9e-claude"


@pytest.mark.parametrize(
    ("stdin", "warning"),
    [
        (b"", "stdin was empty"),
        (b"{not json", "stdin is not valid JSON"),
        (b"[1, 2]", "stdin JSON is not an object"),
        (b"\xff\xfe garbage", "stdin is not valid JSON"),
    ],
)
def test_bad_stdin_warns_and_stores_nothing(
    hook_env: HookEnv, server: redis.Redis, stdin: bytes, warning: str
) -> None:
    r = subprocess.run(
        [HIVEMIND, "hooks", "post-edit"],
        input=stdin,
        capture_output=True,
        cwd=hook_env.root,
        env=hook_env.env,
        timeout=20,
        check=False,
    )
    assert r.returncode == 0 and r.stdout == b""
    assert warning in r.stderr.decode()
    assert server.zcard(hook_env.keys.sessions) == 0


def test_huge_stdin_is_refused_without_hanging(hook_env: HookEnv, server: redis.Redis) -> None:
    huge = b'{"tool_input": {"file_path": "x", "content": "' + b"a" * (9 * 1024 * 1024) + b'"}}'
    proc = subprocess.Popen(
        [HIVEMIND, "hooks", "post-edit"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=hook_env.root,
        env=hook_env.env,
    )
    writer = threading.Thread(target=lambda: _feed(proc, huge), daemon=True)
    writer.start()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out == b""
    assert b"larger than 8 MiB" in err
    assert server.zcard(hook_env.keys.sessions) == 0


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass


def test_open_stdin_nobody_writes_does_not_block(hook_env: HookEnv, server: redis.Redis) -> None:
    proc = subprocess.Popen(
        [HIVEMIND, "hooks", "pre-task", "-d", "x", "--session-id", "open"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=hook_env.root,
        env=hook_env.env,
    )
    start = time.monotonic()
    out, err = _wait_keep_stdin_open(proc)
    assert proc.returncode == 0 and out == b"" and err == b""
    assert time.monotonic() - start < 3
    assert server.xlen(hook_env.keys.session_events("open")) == 1


def _wait_keep_stdin_open(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    proc.wait(timeout=10)  # stdin stays open and silent the whole time
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    proc.stdin.close()
    return proc.stdout.read(), proc.stderr.read()


def test_read_stdin_json_units() -> None:
    r, w = os.pipe()
    os.write(w, b'{"a": 1}')
    os.close(w)
    assert read_stdin_json(r).data == {"a": 1}
    os.close(r)
    r, w = os.pipe()
    t0 = time.monotonic()
    assert read_stdin_json(r, first_byte_timeout_s=0.05).status == "absent"
    assert time.monotonic() - t0 < 0.5
    os.close(r)
    os.close(w)
    r, w = os.pipe()
    os.write(w, b"x" * 2000)
    assert read_stdin_json(r, max_bytes=1000).status == "huge"
    os.close(r)
    os.close(w)


def test_install_merges_and_is_idempotent(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    existing = {
        "permissions": {"allow": ["Bash(ls)"]},
        "hooks": {
            "PostToolUse": [
                {
                    "matcher": "Write|Edit|MultiEdit|NotebookEdit",
                    "hooks": [{"type": "command", "command": "ruff format"}],
                }
            ]
        },
    }
    settings.write_text(json.dumps(existing))
    first = install(tmp_path, command_prefix="/venv/bin/hivemind hooks")
    assert first.written and len(first.added) == len(HOOK_ENTRIES)
    doc = json.loads(settings.read_text())
    assert doc["permissions"] == existing["permissions"]
    edit_group = next(g for g in doc["hooks"]["PostToolUse"] if g["matcher"].startswith("Write"))
    assert [h["command"] for h in edit_group["hooks"]] == [
        "ruff format",
        "/venv/bin/hivemind hooks post-edit",
    ]
    assert "matcher" not in doc["hooks"]["SessionStart"][0]
    second = install(tmp_path, command_prefix="/venv/bin/hivemind hooks")
    assert not second.written and len(second.kept) == len(HOOK_ENTRIES)
    assert json.loads(settings.read_text()) == doc
    moved = install(tmp_path, command_prefix="/other/hivemind hooks")
    assert len(moved.updated) == len(HOOK_ENTRIES)
    text = settings.read_text()
    assert "/venv/bin/hivemind" not in text and text.count("/other/hivemind hooks") == len(
        HOOK_ENTRIES
    )


def test_install_cli_refuses_malformed_settings(hook_env: HookEnv) -> None:
    (hook_env.root / ".claude").mkdir()
    bad = hook_env.root / ".claude" / "settings.json"
    bad.write_text("{oops")
    r = hook_env.run("install", extra_env={"CLAUDE_PROJECT_DIR": str(hook_env.root)})
    assert r.returncode == 2 and "fix or move it first" in r.stderr
    assert bad.read_text() == "{oops"
    bad.unlink()
    r = hook_env.run("install", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["written"] is True
    doc = json.loads(bad.read_text())
    assert doc["hooks"]["PostToolUse"][1]["hooks"][0]["command"].endswith("hooks post-edit")
    assert doc["hooks"]["PostToolUse"][1]["hooks"][0]["timeout"] == 10
