"""The swarm runs under exactly the least-privilege ACL user of ``docs/redis-acl.md``.

A second embedded server with ``requirepass`` stands in for an external
Redis. The ``hivemind`` user gets the rule line below (keys and channels
``hm:*``, only the commands hivemind sends) and then: the agent cores and a
target runtime run the loop end to end, hooks write a session, the session
CLI reads it back, and ``swarm status --json`` reports, all through
``unix://hivemind:PASS@/path/redis.sock``. ``ACL LOG`` must stay empty:
no command, key or channel was refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.swarm.messages import MemorySample
from hivemind.swarm.redis.bus import wire
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.state import SupervisorLock, SwarmInfo, remove_info, write_info
from tests.conftest import wait_for
from tests.reliability.inproc import InProcessSwarm

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
DOC = Path(__file__).resolve().parents[2] / "docs" / "redis-acl.md"

# Keep in sync with docs/redis-acl.md (the test checks the document holds this exact list).
COMMANDS = (
    "+ping +info +select "
    "+get +set +del +exists +pexpire +scan "
    "+hget +hset +hsetnx +hgetall +hmget +hincrby +hincrbyfloat +hscan "
    "+lpush +ltrim "
    "+zadd +zrevrange "
    "+xlen +xrange +xrevrange "
    "+publish +subscribe +unsubscribe "
    "+multi +exec +discard "
    "+eval +evalsha +script|load +script|exists "
    "+client|setinfo"
)
LUA_ONLY = (
    "+zscore +zcard +zremrangebyrank +xadd"  # in the Lua scripts (xadd: also the memory series)
)


def acl_rule(password: str) -> list[str]:
    """The ``ACL SETUSER hivemind ...`` arguments."""
    return [
        "on",
        f">{password}",
        "resetkeys",
        "~hm:*",
        "resetchannels",
        "&hm:*",
        "-@all",
        *COMMANDS.split(),
        *LUA_ONLY.split(),
    ]


@pytest.fixture
def acl_url(password_server: tuple[EmbeddedRedis, str]) -> Iterator[tuple[str, redis.Redis]]:
    server, admin_password = password_server
    admin = redis.Redis(unix_socket_path=str(server.socket_path), password=admin_password)
    user_password = uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", "hivemind", *acl_rule(user_password))
    admin.execute_command("ACL", "LOG", "RESET")
    try:
        yield f"unix://hivemind:{user_password}@{server.socket_path}", admin
    finally:
        admin.close()


def _denials(admin: redis.Redis) -> list[str]:
    out = []
    for entry in admin.execute_command("ACL", "LOG"):
        row = dict(zip(entry[::2], entry[1::2], strict=False))
        out.append(f"{row.get(b'reason')!r} {row.get(b'object')!r}")
    return out


def test_document_holds_the_tested_rule() -> None:
    text = DOC.read_text()
    for token in (*COMMANDS.split(), *LUA_ONLY.split(), "~hm:*", "&hm:*", "-@all", "resetkeys"):
        assert token in text, token


def test_loop_hooks_sessions_and_status_under_the_acl_user(
    acl_url: tuple[str, redis.Redis], tmp_path: Path, namespace: str
) -> None:
    url, admin = acl_url
    state = tmp_path / ".hivemind"
    secret = os.urandom(32)
    swarm = InProcessSwarm(url=url, namespace=namespace, secret=secret, state_dir=state)
    lock = SupervisorLock(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    try:
        # (a) the loop: cores + a runtime, one sample over the target -> ack.
        swarm.start()
        rt = swarm.add_runtime("acl-rt", target_mb=100_000)
        assert wait_for(swarm.subscribed, 10)
        sample = MemorySample(
            target="acl-rt", pid=1, seq=1, rss_bytes=2 << 30, target_bytes=1 << 30
        )
        c = swarm.coordinator.redis
        c.publish(swarm.keys.samples, wire(sample, secret))  # sealed, as a target does
        assert wait_for(lambda: rt.stats["commands"] >= 1, 10), rt.stats
        assert wait_for(lambda: int(c.hget(swarm.keys.counters, "acks") or 0) >= 1, 10)
        assert rt.stats["refused"] == 0
        sid = swarm.coordinator.session_id

        # (b) hooks write into a session with the ACL user (external Redis by env).
        hook_env = {**env, "HIVEMIND_REDIS_URL": url, "HIVEMIND_NAMESPACE": namespace}
        for args in (
            ["pre-task", "--description", "acl check", "--session-id", "acl-s1", "--strict"],
            [
                "post-edit",
                "--file",
                "a.py",
                "--memory-key",
                "k1",
                "--session-id",
                "acl-s1",
                "--strict",
            ],
            ["notify", "--message", "hi", "--session-id", "acl-s1", "--strict"],
            ["session-end", "--session-id", "acl-s1", "--strict"],
        ):
            r = subprocess.run(
                [HIVEMIND, "hooks", *args, "--state-dir", str(state)],
                capture_output=True,
                text=True,
                env=hook_env,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            assert r.returncode == 0, (args, r.stderr)
        show = subprocess.run(
            [HIVEMIND, "session", "show", "acl-s1", "--json", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=hook_env,
            timeout=30,
            check=False,
        )
        assert show.returncode == 0, show.stderr
        assert "acl check" in show.stdout
        mem = subprocess.run(
            [HIVEMIND, "memory", "list", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=hook_env,
            timeout=30,
            check=False,
        )
        assert mem.returncode == 0, mem.stderr

        # (c) swarm status --json, as a supervisor of this swarm would be seen.
        lock.acquire()
        write_info(
            state,
            SwarmInfo(
                pid=os.getpid(),
                namespace=namespace,
                redis_url=url,
                embedded=False,
                state="ready",
                session_id=sid,
            ),
        )
        st = subprocess.run(
            [HIVEMIND, "swarm", "status", "--json", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        assert status["redis"]["mode"] == "external" and status["redis"]["version"] != "?"
        assert sum(a["alive"] for a in status["agents"]) == 4
        assert any(t["name"] == "acl-rt" for t in status["targets"])
        assert status["counters"]["acks"] >= 1
        assert url.split(":")[2].split("@")[0] not in st.stdout  # password redacted
    finally:
        swarm.stop()
        lock.release()
        remove_info(state)
    assert _denials(admin) == [], "the ACL refused something hivemind needs"


def test_the_acl_user_cannot_touch_other_keys_or_run_admin_commands(
    acl_url: tuple[str, redis.Redis], password_server: tuple[EmbeddedRedis, str]
) -> None:
    url, _ = acl_url
    c = redis.Redis.from_url(url)
    config = password_server[0].config_command()  # our stand-in renames CONFIG
    try:
        c.set("hm:x:ok", "1")
        with pytest.raises(redis.ResponseError, match="unknown command"):
            c.execute_command("DEBUG", "SLEEP", "0")  # disabled on the embedded server
        for attempt in (
            lambda: c.set("other:key", "1"),
            lambda: c.publish("other", "x"),
            lambda: c.execute_command(config, "GET", "*"),
            lambda: c.flushall(),
            lambda: c.keys("*"),
            lambda: c.execute_command("SHUTDOWN"),
            lambda: c.eval("return redis.call('SET', 'other:key', '1')", 0),
            lambda: c.eval("return redis.call('FLUSHALL')", 0),
        ):
            with pytest.raises(
                redis.ResponseError, match=r"NOPERM|permission|can't access|can't run"
            ):
                attempt()
    finally:
        c.close()
