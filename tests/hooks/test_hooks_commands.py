"""Each hook command and flag against the real embedded redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from conftest import HookEnv

from hivemind.coordinator.sessions.store import valid_session_id
from hivemind.hooks.cli import main, parse_args
from hivemind.swarm.keys import Keys


def events(client: redis.Redis, keys: Keys, sid: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(keys.session_events(sid))
    ]


def hook(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--no-stdin"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_report_commands_work_as_written(hook_env: HookEnv, server: redis.Redis) -> None:
    """The seed report's three lines, with `npx claude-flow@alpha` -> `hivemind`."""
    r1 = hook_env.run("pre-task", "--description", "Memory optimization task")
    r2 = hook_env.run(
        "post-edit",
        "--file",
        "memory_optimizer.py",
        "--memory-key",
        "swarm/performance_benchmarker/optimization",
    )
    assert (r1.returncode, r1.stdout, r1.stderr) == (0, "", "")
    assert (r2.returncode, r2.stdout, r2.stderr) == (0, "", "")
    keys = hook_env.keys
    sid = server.get(keys.hooks_current).decode()
    assert valid_session_id(sid) and sid.startswith("hm-")
    evs = events(server, keys, sid)
    assert [e["kind"] for e in evs] == ["pre-task", "post-edit"]
    assert json.loads(evs[0]["data"])["description"] == "Memory optimization task"
    entry = json.loads(
        server.hget(keys.memory("default"), "swarm/performance_benchmarker/optimization")
    )
    assert entry["file"] == "memory_optimizer.py" and entry["session_id"] == sid
    assert entry["edit_id"] and entry["edited_at"].endswith("Z")
    r3 = hook_env.run("session-restore", "--session-id", sid)
    assert r3.returncode == 0 and r3.stderr == ""
    assert f"session {sid}: 2 events" in r3.stdout and "no coordinator running" in r3.stdout
    assert "post-edit" in r3.stdout


def test_json_output_and_quiet_default(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = hook(capsys, "pre-task", "--description", "quiet")
    assert (code, out, err) == (0, "", "")
    code, out, _ = hook(
        capsys, "pre-task", "--description", "loud", "--format", "json", "--session-id", "s-json"
    )
    doc = json.loads(out)
    assert doc["ok"] and doc["recorded"] and doc["created"] and doc["session_id"] == "s-json"
    assert doc["namespace"] == hook_env.namespace and doc["redis"] == "embedded"
    assert doc["task_id"].startswith("task-")


@pytest.mark.parametrize(
    "argv",
    [
        ["--description", "d1", "--task-id", "t1", "--agent-id", "a1"],
        ["--description=d1", "--task-id=t1", "--agent-id=a1"],
        ["--description", "d1", "--task_id", "t1", "--agentId", "a1"],
        ["-d", "d1", "--task-id", "t1", "--agent-id=a1", "--auto-spawn-agents", "true"],
        ["d1", "--task-id", "t1", "--agent-id", "a1", "--load-memory", "--telemetry=true"],
    ],
)
def test_pre_task_flag_variants(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = hook(capsys, "pre-task", *argv, "--session-id", "flags")
    assert code == 0 and out == ""
    (ev,) = events(server, hook_env.keys, "flags")
    assert json.loads(ev["data"]) == {"task_id": "t1", "description": "d1", "agent_id": "a1"}
    unknown = [
        a.split("=")[0]
        for a in argv
        if a.startswith("--")
        and a.split("=")[0] in ("--auto-spawn-agents", "--load-memory", "--telemetry")
    ]
    for flag in unknown:
        assert f"unknown flag {flag} ignored" in err
    if not unknown:
        assert err == ""


def test_parse_args_details() -> None:
    args, warnings = parse_args(
        [
            "session-end",
            "--export-metrics",
            "true",
            "--generate-summary",
            "--save-state=false",
            "-x",
            "--format",
            "true",
        ]
    )
    assert args.bools == {"export-metrics": True, "generate-summary": True}
    assert not args.truthy("json")  # claude-flow's `--format true` means auto-format, not JSON
    assert warnings == ["unknown flag --save-state ignored", "unknown flag -x ignored"]
    args, warnings = parse_args(["post-edit", "--file"])
    assert warnings == ["flag --file needs a value; ignored"]


def test_unknown_command_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "post-edit" in capsys.readouterr().out
    assert main(["pre-task", "--help"]) == 0 and "usage:" in capsys.readouterr().out


def test_post_task_notify_pre_edit(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = "mixed"
    assert (
        hook(
            capsys,
            "post-task",
            "--task-id",
            "t9",
            "--status",
            "failed",
            "--analyze-performance",
            "--session-id",
            sid,
        )[0]
        == 0
    )
    assert (
        hook(capsys, "notify", "--message", "hello", "--level", "warning", "--session-id", sid)[0]
        == 0
    )
    assert (
        hook(capsys, "pre-edit", "--file", "a.py", "--operation", "update", "--session-id", sid)[0]
        == 0
    )
    kinds = {e["kind"]: json.loads(e["data"]) for e in events(server, hook_env.keys, sid)}
    assert kinds["post-task"] == {"task_id": "t9", "status": "failed"}
    assert kinds["notify"] == {"message": "hello", "level": "warning"}
    assert kinds["pre-edit"]["file"] == "a.py" and kinds["pre-edit"]["operation"] == "update"
    counters = server.hgetall(hook_env.keys.session(sid))
    assert counters[b"count.events"] == b"3" and counters[b"count.notify"] == b"1"


def test_missing_required_input_records_nothing(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    for cmd, what in (
        ("pre-task", "--description"),
        ("post-task", "--task-id"),
        ("post-edit", "--file"),
        ("notify", "--message"),
    ):
        code, out, err = hook(capsys, cmd)
        assert (code, out) == (0, "")
        assert f"{cmd}: no {what} given; nothing recorded" in err
    assert server.zcard(hook_env.keys.sessions) == 0


def test_idempotent_content_hash(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    f = hook_env.root / "mod.py"
    f.write_text("a = 1\n")
    argv = ("post-edit", "--file", "mod.py", "--memory-key", "k", "--session-id", "idem")
    hook(capsys, *argv)
    hook(capsys, *argv)  # a retry: same file content -> same edit
    assert len(events(server, hook_env.keys, "idem")) == 1
    f.write_text("a = 22\n")  # a real new edit
    _code, out, _ = hook(capsys, *argv, "--format", "json")
    assert json.loads(out)["recorded"] is True
    assert len(events(server, hook_env.keys, "idem")) == 2
    assert server.hget(hook_env.keys.session("idem"), "count.post-edit") == b"2"


def test_session_pointer_start_end(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = hook_env.keys
    code, out, _ = hook(capsys, "session-start", "--session-id", "pointer-1", "--format", "json")
    assert json.loads(out)["created"] is True
    assert server.get(keys.hooks_current) == b"pointer-1"
    hook(capsys, "pre-task", "--description", "goes to pointer")
    assert server.hget(keys.session("pointer-1"), "count.pre-task") == b"1"
    export = hook_env.root / "out.json"
    code, out, err = hook(
        capsys, "session-end", "--export", str(export), "--generate-summary", "true"
    )
    assert code == 0, err
    assert "session pointer-1: 3 events" in out
    assert server.get(keys.hooks_current) is None
    doc = json.loads(export.read_text())
    assert [e["kind"] for e in doc["events"]] == ["session-start", "pre-task", "session-end"]
    code, out, err = hook(capsys, "session-end")
    assert code == 0 and "no current session" in err


def test_export_metrics_default_path(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    hook(capsys, "pre-task", "-d", "x", "--session-id", "exp")
    _code, out, _ = hook(
        capsys, "session-end", "--session-id", "exp", "--export-metrics", "--format", "json"
    )
    path = Path(json.loads(out)["export"])
    assert path == hook_env.state_dir / "exports" / "exp.json" and path.exists()


def test_restore_unknown_session(
    hook_env: HookEnv, server: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = hook(capsys, "session-restore", "--session-id", "nope")
    assert (code, out) == (0, "")
    assert "unknown session 'nope'" in err
    code, _, _ = hook(capsys, "session-restore", "--session-id", "nope", "--strict")
    assert code == 1
    code, out, _ = hook(capsys, "session-restore", "--session-id", "bad id!", "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is False


def test_internal_error_exits_zero_and_logs(hook_env: HookEnv) -> None:
    # An unreachable Redis is not an error any more (the write is journaled, see
    # tests/reliability/test_journal.py); a URL no client can use still is.
    bad = {"HIVEMIND_REDIS_URL": "ftp://127.0.0.1:1/0"}
    r = hook_env.run("pre-task", "--description", "x", extra_env=bad)
    assert r.returncode == 0 and r.stdout == ""
    assert "hivemind hooks: error: pre-task failed" in r.stderr and "Traceback" not in r.stderr
    assert "pre-task failed" in (hook_env.state_dir / "hooks.log").read_text()
    assert hook_env.run("pre-task", "--description", "x", "--strict", extra_env=bad).returncode == 1


def test_external_url_and_redis_py_driver(
    hook_env: HookEnv,
    server: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = server.connection_pool.connection_kwargs["path"]
    monkeypatch.setenv("HIVEMIND_REDIS_URL", f"unix://{url}")
    _, out, _ = hook(
        capsys,
        "pre-task",
        "-d",
        "ext",
        "--session-id",
        "ext",
        "--driver",
        "redis-py",
        "--format",
        "json",
    )
    doc = json.loads(out)
    assert doc["redis"] == "external" and doc["recorded"]
    _code, out, _ = hook(
        capsys, "session-restore", "--session-id", "ext", "--driver", "redis-py", "--format", "json"
    )
    assert json.loads(out)["restored"]["counters"]["pre-task"] == 1


def test_stream_cap_from_env(
    hook_env: HookEnv,
    server: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HIVEMIND_STREAM_MAXLEN", "100")
    for i in range(350):
        hook(capsys, "notify", "--message", f"m{i}", "--session-id", "capped")
    xlen = server.xlen(hook_env.keys.session_events("capped"))
    assert 100 <= xlen <= 200  # MAXLEN ~ trims whole macro nodes
    assert server.hget(hook_env.keys.session("capped"), "count.events") == b"350"
    assert server.zcard(hook_env.keys.session_dedup("capped")) == 100
