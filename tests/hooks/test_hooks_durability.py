"""Nothing lost: 50 concurrent hooks, a SIGKILLed redis-server, a running swarm."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import redis
from conftest import HookEnv

from hivemind.swarm.messages import parse_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.conftest import kill_redis


def _fire_50(hook_env: HookEnv, sid: str) -> None:
    procs = [
        hook_env.popen(
            "pre-task", "--description", f"task {i}", "--task-id", f"t{i}", "--session-id", sid
        )
        for i in range(50)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out == "" and err == "", err


def _task_ids(client: redis.Redis, hook_env: HookEnv, sid: str) -> set[str]:
    return {
        json.loads(f[b"data"])["task_id"]
        for _, f in client.xrange(hook_env.keys.session_events(sid))
    }


def test_50_concurrent_hooks_all_land_warm(hook_env: HookEnv, server: redis.Redis) -> None:
    _fire_50(hook_env, "conc")
    assert _task_ids(server, hook_env, "conc") == {f"t{i}" for i in range(50)}
    assert server.hget(hook_env.keys.session("conc"), "count.events") == b"50"


def test_50_concurrent_hooks_all_land_cold(hook_env: HookEnv) -> None:
    """No server running: the hooks start it among themselves and the last one stops it."""
    _fire_50(hook_env, "cold")
    embedded = EmbeddedRedis(hook_env.state_dir)
    assert embedded.pid() is None  # nothing left running
    with embedded.lease() as url:
        client = connect(url)
        try:
            assert _task_ids(client, hook_env, "cold") == {f"t{i}" for i in range(50)}
        finally:
            client.close()


def test_sessions_survive_sigkill_of_redis_server(hook_env: HookEnv) -> None:
    embedded = EmbeddedRedis(hook_env.state_dir)
    with embedded.lease():
        for i in range(5):
            assert (
                hook_env.run("notify", "--message", f"m{i}", "--session-id", "durable").returncode
                == 0
            )
        assert (
            hook_env.run(
                "post-edit", "--file", "f.py", "--memory-key", "k/1", "--session-id", "durable"
            ).returncode
            == 0
        )
        time.sleep(1.3)  # appendfsync everysec
        kill_redis(embedded)
    # the lease's stop found a dead server; a fresh one replays the AOF
    with embedded.lease() as url:
        client = connect(url)
        try:
            keys = hook_env.keys
            assert client.xlen(keys.session_events("durable")) == 6
            assert client.hget(keys.session("durable"), "count.events") == b"6"
            assert json.loads(client.hget(keys.memory("default"), "k/1"))["file"] == "f.py"
        finally:
            client.close()
    r = hook_env.run("session-restore", "--session-id", "durable")
    assert r.returncode == 0 and "session durable: 6 events" in r.stdout


def test_running_swarm_session_and_restore_handoff(
    hook_env: HookEnv, server: redis.Redis, tmp_path: Path
) -> None:
    """With a swarm up, hooks use its Redis, namespace and session; restore is handed over."""
    swarm_ns = hook_env.namespace + "sw"
    url = "unix://" + server.connection_pool.connection_kwargs["path"]
    lock = SupervisorLock(hook_env.state_dir)
    lock.acquire()
    received: list[bytes] = []
    try:
        write_info(
            hook_env.state_dir,
            SwarmInfo(
                pid=os.getpid(),
                namespace=swarm_ns,
                redis_url=url,
                embedded=True,
                state="ready",
                session_id="swarm-s1",
            ),
        )
        from hivemind.swarm.keys import Keys

        keys = Keys(swarm_ns)
        server.hset(keys.swarm, "session_id", "swarm-s1")
        r = hook_env.run("pre-task", "--description", "during swarm", "--format", "json")
        doc = json.loads(r.stdout)
        assert (doc["session_id"], doc["namespace"], doc["redis"]) == (
            "swarm-s1",
            swarm_ns,
            "swarm",
        )
        # a tiny coordinator: take restore requests from the control channel
        pubsub = server.pubsub()
        pubsub.subscribe(keys.control)
        pubsub.get_message(timeout=1)

        def coordinator() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=0.1)
                if msg and msg["type"] == "message":
                    received.append(msg["data"])
                    return

        t = threading.Thread(target=coordinator)
        t.start()
        r = hook_env.run("session-restore", "--session-id", "swarm-s1", "--format", "json")
        t.join(10)
        pubsub.close()
        doc = json.loads(r.stdout)
        assert doc["handed_to_coordinator"] is True and doc["restored"]["counters"]["pre-task"] == 1
        from hivemind.swarm.seal import unseal
        from hivemind.swarm.secret import read_secret

        # sealed with the project's key: the coordinator drops anything else
        control = parse_message(unseal(received[0], read_secret(hook_env.state_dir)))
        assert control.kind == "control" and control.session_id == "swarm-s1"
    finally:
        lock.release()
    assert server.zscore(hook_env.keys.sessions, "swarm-s1") is None  # not in the env namespace
