"""Shared fixtures: real embedded redis-server processes, random namespaces, a swarm."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis

if TYPE_CHECKING:
    from hivemind.swarm.lifecycle.supervisor import Swarm
    from hivemind.swarm.target.runtime import Runtime


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    folder = tmp_path / ".hivemind"
    return folder


@pytest.fixture
def embedded(state_dir: Path) -> Iterator[EmbeddedRedis]:
    """A real embedded redis-server for this test, stopped (by pid) afterwards."""
    server = EmbeddedRedis(state_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(embedded: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = connect(embedded.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, str]]:
    """A second embedded server with ``requirepass``: our stand-in for an external Redis."""
    password = uuid.uuid4().hex
    server = EmbeddedRedis(tmp_path / "external", extra_args=("--requirepass", password))
    server.start()
    try:
        yield server, password
    finally:
        server.stop()


def redis_config(server: EmbeddedRedis, client: redis.Redis, *args: object) -> object:
    """Run ``CONFIG *args`` on an embedded server (it answers only to its renamed name)."""
    return client.execute_command(server.config_command(), *args)


def redis_config_get(server: EmbeddedRedis, client: redis.Redis, name: str) -> str:
    """``CONFIG GET name`` on an embedded server, as one string."""
    reply = redis_config(server, client, "GET", name)
    if isinstance(reply, dict):
        reply = [*next(iter(reply.items()))]
    assert isinstance(reply, list) and len(reply) == 2, reply
    value = reply[1]
    return value.decode() if isinstance(value, bytes) else str(value)


def kill_redis(server: EmbeddedRedis) -> int:
    """SIGKILL ``server`` (as a crash would) and wait until it is gone; return its pid."""
    import signal
    import time

    pid = server.pid()
    assert pid is not None, "no embedded redis-server to kill"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (zombies count as gone)."""
    from hivemind.swarm.redis.server import pid_alive

    return not pid_alive(pid)


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HIVEMIND_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One real local Ray for the whole test session (the swarm joins it)."""
    import ray

    ray.init(
        namespace="hivemind",
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def swarm(ray_local: None, state_dir: Path, namespace: str) -> Iterator[Swarm]:
    """A real swarm (agents on the session's local Ray, embedded Redis), fast heartbeats."""
    from hivemind.swarm.lifecycle.supervisor import Swarm
    from hivemind.swarm.settings import load_settings

    s = Swarm(load_settings(state_dir=state_dir, namespace=namespace, heartbeat_s=0.2))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def wait_for(predicate: object, timeout_s: float = 10.0, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s``; return its last truth."""
    import time

    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def offline_runtime(state_dir: Path, name: str, target_mb: float = 100.0) -> Runtime:
    """A guard with no swarm to join (``state_dir`` holds none) and no key, not started:
    a test drives its methods by hand, or calls ``start()``."""
    from hivemind.swarm.target.runtime import Runtime, RuntimeConfig

    config = RuntimeConfig(
        name=name, target_mb=target_mb, redis_url=None, namespace=None,
        state_dir=state_dir, key=None,
    )  # fmt: skip
    return Runtime(config)
