"""The embedded redis-server: start, stop, restart, persistence, stale files, lease."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from hivemind.swarm.errors import RedisUnavailableError, StateFolderError
from hivemind.swarm.paths import ensure_state_dir
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis, pid_alive
from tests.conftest import kill_redis, redis_config_get


def test_start_binds_unix_socket_only_with_aof(embedded: EmbeddedRedis) -> None:
    c = connect(embedded.url)
    assert redis_config_get(embedded, c, "port") == "0"
    assert redis_config_get(embedded, c, "appendonly") == "yes"
    assert redis_config_get(embedded, c, "appendfsync") == "everysec"
    assert redis_config_get(embedded, c, "maxmemory-policy") == "noeviction"
    assert int(redis_config_get(embedded, c, "maxmemory")) == 512 * 2**20
    assert stat.S_IMODE(embedded.socket_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(embedded.state_dir.stat().st_mode) == 0o700
    pid = embedded.pid()
    assert pid is not None
    # No TCP listener belongs to the server.
    import psutil

    assert [cn for cn in psutil.Process(pid).net_connections(kind="inet")] == []
    c.close()


def test_second_start_adopts_running_server(embedded: EmbeddedRedis) -> None:
    first = embedded.pid()
    pid, started = EmbeddedRedis(embedded.state_dir).start()
    assert (pid, started) == (first, False)


def test_stop_then_restart_keeps_data(embedded: EmbeddedRedis) -> None:
    c = connect(embedded.url)
    c.set("hm:test:k", "v")
    c.close()
    pid = embedded.pid()
    assert pid is not None
    assert embedded.stop() is True
    assert not pid_alive(pid)
    assert embedded.pid() is None
    embedded.start()
    c = connect(embedded.url)
    assert c.get("hm:test:k") == b"v"
    c.close()


def test_data_survives_sigkill_through_aof(embedded: EmbeddedRedis) -> None:
    c = connect(embedded.url)
    c.set("hm:test:aof", "kept")
    c.close()
    time.sleep(1.5)  # appendfsync everysec
    pid = kill_redis(embedded)
    # The socket and pid file are now stale; start() must recover them.
    assert embedded.socket_path.exists()
    assert embedded.pid() is None
    new_pid, started = embedded.start()
    assert started and new_pid != pid
    c = connect(embedded.url)
    assert c.get("hm:test:aof") == b"kept"
    c.close()


def test_stale_pid_file_of_unrelated_process_is_ignored(state_dir: Path) -> None:
    server = EmbeddedRedis(state_dir)
    ensure_state_dir(state_dir)
    server.data_dir.mkdir(mode=0o700)
    server.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a redis-server
    server.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    server.socket_path.write_text("stale")  # a plain file where the socket should be
    try:
        pid, started = server.start()
        assert started and pid != os.getpid()
    finally:
        server.stop()


def test_lease_stops_server_when_last_user_leaves(state_dir: Path) -> None:
    outer = EmbeddedRedis(state_dir)
    with outer.lease():
        pid = outer.pid()
        with EmbeddedRedis(state_dir).lease():
            assert EmbeddedRedis(state_dir).pid() == pid
        assert outer.pid() == pid, "an inner user must not stop a server others use"
    assert pid is not None and not pid_alive(pid)


def test_world_writable_state_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(StateFolderError, match="writable by other users"):
        EmbeddedRedis(folder).start()


def test_bad_extra_args_give_the_server_log_line(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "bad", extra_args=("--no-such-directive", "1"))
    with pytest.raises(RedisUnavailableError, match="exited with code"):
        server.start()


def test_pid_alive_refuses_what_is_no_single_process() -> None:
    """``kill(0, 0)`` and ``kill(-1, 0)`` succeed (a process group, every process): neither
    is a live server."""
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
