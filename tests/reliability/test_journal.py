"""The hooks' journal: writes kept on disk while Redis is away, replayed once, never twice.

Real ``hivemind hooks`` processes and a real redis-server. The swarm's
Redis is "away" because it has not been started yet (swarm.json points at
its socket, the test holds the swarm lock): nothing here kills and restarts
a server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.hooks import journal
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.resp import open_connection
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.hooks.conftest import HookEnv

SID = "journal-s1"


@pytest.fixture
def away(hook_env: HookEnv, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A running swarm (lock held, swarm.json) whose Redis is not up: hooks cannot reach it."""
    server = EmbeddedRedis(tmp_path / "swarm-redis")
    lock = SupervisorLock(hook_env.state_dir)
    lock.acquire()
    write_info(
        hook_env.state_dir,
        SwarmInfo(
            pid=os.getpid(),
            namespace=hook_env.namespace,
            redis_url=server.url,
            embedded=True,
            state="ready",
            session_id=SID,
        ),
    )
    try:
        yield server
    finally:
        lock.release()
        server.stop()


def _rows(client: redis.Redis, hook_env: HookEnv) -> list[str]:
    return [
        json.loads(f[b"data"])["message"]
        for _, f in client.xrange(hook_env.keys.session_events(SID))
    ]


def _log(hook_env: HookEnv) -> str:
    return (hook_env.state_dir / "hooks.log").read_text()


def test_write_with_redis_down_then_replay_once_and_idempotently(
    hook_env: HookEnv, away: EmbeddedRedis
) -> None:
    for i in range(5):
        r = hook_env.run("notify", "--message", f"m{i}", "--strict", "--format", "json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["journaled"] is True and doc["recorded"] is True and doc["session_id"] == SID
    path = journal.journal_path(hook_env.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [ln for ln in path.read_text().splitlines() if ln]
    assert len(lines) == 5 and all(json.loads(ln)["kind"] == "notify" for ln in lines)
    assert _log(hook_env).count("notify: Redis unreachable") == 5
    saved = path.read_bytes()

    away.start()  # Redis comes up (for the first time): the next hook replays
    r = hook_env.run("notify", "--message", "m5", "--strict")
    assert r.returncode == 0, r.stderr
    client = connect(away.url)
    try:
        assert _rows(client, hook_env) == [f"m{i}" for i in range(6)]
        assert journal.pending(hook_env.state_dir) == 0
        assert "replayed 5 journaled event(s)" in _log(hook_env)
        # A second replay of the same events (as after a crash before truncation) adds nothing.
        path.write_bytes(saved)
        conn = open_connection(away.url)
        try:
            again = journal.replay(conn, hook_env.state_dir)
        finally:
            conn.close()
        assert (again.replayed, again.duplicates, again.torn) == (0, 5, 0), again
        assert _rows(client, hook_env) == [f"m{i}" for i in range(6)]
        assert client.hget(hook_env.keys.session(SID), "count.events") == b"6"
        assert journal.pending(hook_env.state_dir) == 0
    finally:
        client.close()


TORN_WRITER = """
import os, signal, sys
from pathlib import Path
from hivemind.hooks import journal
fd = journal._open(journal.journal_path(Path(sys.argv[1])))
os.write(fd, b'{"v":1,"ts":1.0,"ns":"x","session_id":"s","kind":"noti')
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_write_leaves_a_torn_line_that_is_skipped_and_reported(
    hook_env: HookEnv, away: EmbeddedRedis
) -> None:
    assert hook_env.run("notify", "--message", "before", "--strict").returncode == 0
    killed = subprocess.run(
        [sys.executable, "-c", TORN_WRITER, str(hook_env.state_dir)], check=False, timeout=30
    )
    assert killed.returncode == -signal.SIGKILL
    assert not journal.journal_path(hook_env.state_dir).read_bytes().endswith(b"\n")
    assert hook_env.run("notify", "--message", "after", "--strict").returncode == 0
    away.start()
    assert hook_env.run("notify", "--message", "live", "--strict").returncode == 0
    client = connect(away.url)
    try:
        assert _rows(client, hook_env) == ["before", "after", "live"]
    finally:
        client.close()
    log = _log(hook_env)
    assert "replayed 2 journaled event(s), 1 torn line(s) skipped" in log, log


def test_the_journal_is_bounded_with_a_clear_message(
    hook_env: HookEnv, away: EmbeddedRedis
) -> None:
    env = {"HIVEMIND_JOURNAL_MAX_BYTES": "4096"}
    results = [
        hook_env.run("notify", "--message", f"fill {i} " + "x" * 200, "--strict", extra_env=env)
        for i in range(20)
    ]
    codes = [r.returncode for r in results]
    assert 0 < codes.index(1) < 20 and set(codes[codes.index(1) :]) == {1}, codes
    refused = results[codes.index(1)]
    assert "hook journal" in refused.stderr and "is full" in refused.stderr
    assert "NOT stored" in refused.stderr
    assert journal.pending(hook_env.state_dir) <= 4096
    # Without --strict the hook still exits 0 but says so on stderr and in hooks.log.
    lax = hook_env.run("notify", "--message", "one more " + "x" * 200, extra_env=env)
    assert lax.returncode == 0 and "is full" in lax.stderr
    assert "NOT stored" in _log(hook_env)
    stored = codes.index(1)
    away.start()
    assert hook_env.run("notify", "--message", "live", extra_env=env).returncode == 0
    client = connect(away.url)
    try:
        assert len(_rows(client, hook_env)) == stored + 1  # every write that exited 0, no more
    finally:
        client.close()


def test_a_symlinked_journal_is_refused(hook_env: HookEnv, away: EmbeddedRedis) -> None:
    elsewhere = hook_env.root / "elsewhere.txt"
    elsewhere.write_text("")
    hook_env.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    journal.journal_path(hook_env.state_dir).symlink_to(elsewhere)
    r = hook_env.run("notify", "--message", "via link", "--strict")
    assert r.returncode == 1 and "cannot open the hook journal" in r.stderr
    assert elsewhere.read_text() == ""
    shutil.rmtree(hook_env.state_dir / "redis", ignore_errors=True)
