"""Our own Ray head: loopback only, token auth, private temp folder, lean; secrets not in Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hivemind.swarm.agent.base import AgentConfig, node_redis_url, node_secret
from hivemind.swarm.errors import StateFolderError
from hivemind.swarm.lifecycle.ray_head import MAX_TEMP_DIR, ray_env, ray_temp_dir
from hivemind.swarm.redis.connection import strip_password
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import REDIS_URL_FILE, fingerprint, read_secret
from tests.conftest import pid_gone, wait_for


def test_ray_temp_dir_is_private_and_short(tmp_path: Path) -> None:
    for state in (Path("/tmp") / f"hmt{os.getpid()}", tmp_path / ("x" * 60)):
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = ray_temp_dir(state)
        assert len(os.fsencode(temp)) <= MAX_TEMP_DIR
        assert stat.S_IMODE(temp.stat().st_mode) == 0o700
        temp.chmod(0o777)  # what `ray start` does to its temp folder
        assert ray_temp_dir(state) == temp
        assert stat.S_IMODE(temp.stat().st_mode) == 0o700
    assert ray_temp_dir(Path("/tmp") / f"hmt{os.getpid()}") == Path(f"/tmp/hmt{os.getpid()}/ray")
    import shutil

    shutil.rmtree(Path("/tmp") / f"hmt{os.getpid()}")


def test_ray_env_is_loopback_with_a_private_token(tmp_path: Path) -> None:
    env = ray_env(tmp_path, auth=True)
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["RAY_AUTH_MODE"] == "token"
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert token.parent == tmp_path and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) == 64
    token.chmod(0o644)
    with pytest.raises(StateFolderError):
        ray_env(tmp_path, auth=True)
    assert "RAY_AUTH_MODE" not in ray_env(tmp_path, auth=False)


def test_agent_config_holds_no_secret_and_agents_find_them_on_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "redis://hm:s3cretpw@db.example:6380/2"
    key = read_secret(tmp_path)
    config = AgentConfig(
        namespace="ns",
        redis_url=strip_password(url),
        state_dir=str(tmp_path),
        secret_id=fingerprint(key),
    )
    text = repr(config) + json.dumps(dataclasses.asdict(config))
    assert "s3cretpw" not in text and key.decode() not in text
    assert config.redis_url == "redis://hm@db.example:6380/2"
    # On the node: the file in the state folder, or the node's environment.
    assert node_redis_url(config) == config.redis_url  # nothing on this node: no password
    (tmp_path / REDIS_URL_FILE).write_text(url)
    (tmp_path / REDIS_URL_FILE).chmod(0o600)
    assert node_redis_url(config) == url
    monkeypatch.setenv("HIVEMIND_REDIS_URL", "redis://other:pw@elsewhere:1/0")
    assert node_redis_url(config) == url  # an unrelated URL in the environment is ignored
    assert node_secret(config) == key
    other = dataclasses.replace(config, state_dir=str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="HIVEMIND_SECRET"):
        node_secret(other)
    monkeypatch.setenv("HIVEMIND_SECRET", key.decode())
    assert node_secret(other) == key


# --- a real swarm on its own Ray head ------------------------------------------


def _readable_memory(pid: int) -> bytes:
    """The writable memory (heap, anonymous maps) of ``pid``, concatenated."""
    chunks: list[bytes] = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "rw" not in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if end - start > 512 * 2**20:
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue
    return b"".join(chunks)


@pytest.fixture
def supervisor(
    tmp_path: Path, password_server: tuple[EmbeddedRedis, str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str, str]]:
    """A supervisor process (our child, so Ray's daemons are our descendants) on a
    password-protected Redis; yields (process, state folder, namespace, password)."""
    server, password = password_server
    state = Path("/tmp") / f"hmrt{os.getpid()}"
    state.mkdir(mode=0o700, exist_ok=True)
    ns = "rh" + os.urandom(3).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "RAY_"))}
    env.update(
        HIVEMIND_STATE_DIR=str(state),
        HIVEMIND_NAMESPACE=ns,
        HIVEMIND_REDIS_URL=f"unix://:{password}@{server.socket_path}",
    )
    log = open(tmp_path / "supervisor.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "hivemind.swarm.lifecycle.supervisor"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "supervisor.log").read_text()
            try:
                return bool(json.loads((state / "swarm.json").read_text())["state"] == "ready")
            except (OSError, ValueError):
                return False

        assert wait_for(ready, 150, 0.1)
        yield proc, state, ns, password
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        log.close()
        import shutil

        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
def test_own_head_is_loopback_lean_authenticated_and_keeps_secrets_out_of_ray(
    supervisor: tuple[subprocess.Popen[bytes], Path, str, str],
) -> None:
    proc, state, ns, password = supervisor
    root = psutil.Process(proc.pid)
    procs = [root, *root.children(recursive=True)]
    names = {p.pid: " ".join(p.cmdline())[:120] for p in procs}
    joined = "\n".join(names.values())

    # Lean: GCS, raylet, its two agents, four actors; no dashboard/API server or monitors.
    assert "gcs_server" in joined and "/raylet" in joined
    assert len(re.findall(r"ray::\w+Core", joined)) == 4, joined
    for absent in ("dashboard.py", "monitor.py", "log_monitor.py", "ray::IDLE"):
        assert absent not in joined, joined

    # Local means local: every socket of every swarm process is loopback or unix.
    listening = 0
    for p in procs:
        for conn in p.net_connections(kind="all"):
            if conn.family.name == "AF_UNIX":
                continue
            ip = conn.laddr.ip if conn.laddr else ""
            assert ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), (names[p.pid], conn)
            listening += conn.status == "LISTEN"
    assert listening >= 3  # GCS, raylet, workers: the test sees them at all

    # Token auth on, token in the state folder; Ray's temp folder in the state folder.
    gcs = next(p for p in procs if "gcs_server" in names[p.pid])
    genv = gcs.environ()
    assert genv["RAY_AUTH_MODE"] == "token"
    assert Path(genv["RAY_AUTH_TOKEN_PATH"]) == state / "ray-token"
    assert stat.S_IMODE((state / "ray-token").stat().st_mode) == 0o600
    assert f"{state}/ray/session_" in " ".join(gcs.cmdline())
    assert stat.S_IMODE((state / "ray").stat().st_mode) == 0o700

    # Secrets: neither the HMAC key nor the Redis password is in Ray's GCS or raylet
    # (the actor names are: the scan works).
    secret = (state / "secret").read_text().strip().encode()
    for p in procs:
        if "gcs_server" in names[p.pid] or "/raylet" in names[p.pid]:
            memory = _readable_memory(p.pid)
            assert f"{ns}.coordinator".encode() in memory, names[p.pid]
            assert secret not in memory, f"HMAC key in {names[p.pid]}"
            assert password.encode() not in memory, f"Redis password in {names[p.pid]}"

    pids = [p.pid for p in procs]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert wait_for(lambda: all(pid_gone(pid) for pid in pids), 30)
    assert not (state / REDIS_URL_FILE).exists()
