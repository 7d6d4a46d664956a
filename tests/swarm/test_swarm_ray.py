"""The swarm on a real local Ray: agents up, heartbeating, restarted, and stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hivemind.swarm.keys import Keys
from hivemind.swarm.lifecycle.supervisor import Swarm
from hivemind.swarm.messages import Level, PressureEvent
from hivemind.swarm.observe.status import collect_status
from hivemind.swarm.redis.bus import publish
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from hivemind.swarm.settings import load_settings
from tests.conftest import pid_gone, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_agents_are_named_actors_that_heartbeat(swarm: Swarm, state_dir: Path) -> None:
    import ray

    st = collect_status(state_dir, heartbeat_s=0.2)
    assert st.state == "ready"
    assert [a.role for a in st.agents] == [
        "coordinator",
        "benchmarker",
        "gc_optimizer",
        "widget_optimizer",
    ]
    assert all(a.alive and a.pid for a in st.agents)
    assert st.redis.mode == "embedded" and st.redis.persistence == "aof everysec"
    for agent in st.agents:
        actor = ray.get_actor(agent.name, namespace="hivemind")
        assert actor is not None
        assert psutil.pid_exists(agent.pid or 0)


def test_coordinator_hears_pressure_events(swarm: Swarm, state_dir: Path) -> None:
    assert swarm.redis is not None
    ev = PressureEvent(
        target="app",
        level=Level.AGGRESSIVE,
        previous=Level.BALANCED,
        rss_bytes=1,
        target_bytes=2,
        sample_ts=time.time(),
    )
    key = read_secret(state_dir)  # events are sealed, as the benchmarker seals them
    # The coordinator subscribes asynchronously after it answers ping.
    assert wait_for(lambda: publish(swarm.redis, swarm.keys.events, ev, key) >= 1, 10)  # type: ignore[arg-type]
    assert wait_for(lambda: collect_status(state_dir).level == "aggressive", 10)
    swarm.redis.publish(swarm.keys.events, b"garbage")
    assert wait_for(lambda: collect_status(state_dir).bus_errors.get(swarm.keys.events) == 1, 10)


def test_killed_actor_restarts_and_is_counted(swarm: Swarm, state_dir: Path) -> None:
    before = {a.role: a for a in collect_status(state_dir, 0.2).agents}
    victim = before["gc_optimizer"]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)

    def restarted() -> bool:
        now = {a.role: a for a in collect_status(state_dir, 0.2).agents}["gc_optimizer"]
        return now.restarts == 1 and now.alive and now.pid not in (None, victim.pid)

    assert wait_for(restarted, 60, 0.2)


def test_swarm_on_external_password_redis(
    ray_local: None, password_server: tuple[EmbeddedRedis, str], tmp_path: Path, namespace: str
) -> None:
    server, password = password_server
    url = f"unix://:{password}@{server.socket_path}"
    state = tmp_path / "st"
    with Swarm(load_settings(state_dir=state, namespace=namespace, redis_url=url)):
        st = collect_status(state)
        assert st.redis.mode == "external"
        assert password not in st.redis.url
        assert all(a.alive for a in st.agents)
    c = connect(url)
    assert c.hget(Keys(namespace).swarm, "state") == b"stopped"
    c.close()


HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]


def test_detach_status_double_up_and_down_leave_no_process(tmp_path: Path) -> None:
    state = tmp_path / "st"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HIVEMIND, *args, "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    up = cli("swarm", "up", "--detach", "--namespace", "clitest")
    assert up.returncode == 0, up.stderr
    try:
        status = cli("swarm", "status", "--json")
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert st["namespace"] == "clitest" and st["running"]
        assert all(a["alive"] for a in st["agents"])
        supervisor = psutil.Process(st["pid"])
        pids = [p.pid for p in supervisor.children(recursive=True)] + [st["pid"]]
        assert len(pids) >= 6  # redis-server, gcs, raylet, four actors, ...

        again = cli("swarm", "up", "--detach")
        assert again.returncode == 1
        assert "already running" in again.stderr and "Traceback" not in again.stderr
    finally:
        down = cli("swarm", "down")
    assert down.returncode == 0, down.stderr
    assert wait_for(lambda: all(pid_gone(p) for p in pids), 30)
    assert cli("swarm", "status").returncode == 1


def test_metrics_endpoint_of_a_running_swarm(
    ray_local: None, tmp_path: Path, namespace: str
) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    settings = load_settings(state_dir=tmp_path / "st", namespace=namespace, metrics_port=0)
    with Swarm(settings) as swarm:
        assert swarm.metrics_url.startswith("http://127.0.0.1:")
        body = urllib.request.urlopen(swarm.metrics_url, timeout=10).read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        expected = {
            "hivemind_up",
            "hivemind_swarm_level",
            "hivemind_decisions",
            "hivemind_freed_bytes",
            "hivemind_reaction_latency_seconds",
        }
        assert expected <= set(families), sorted(families)
        assert [s.value for s in families["hivemind_up"].samples] == [1.0]
