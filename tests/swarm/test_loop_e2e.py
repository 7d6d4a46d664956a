"""End to end on real Ray and a real redis-server: a leaking process kept under its target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.lifecycle.supervisor import Swarm
from hivemind.swarm.observe.status import collect_status
from hivemind.swarm.secret import read_secret
from hivemind.swarm.settings import load_settings
from tests.conftest import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

LEAKY = str(Path(__file__).with_name("leaky_app.py"))
ROOT = str(Path(__file__).resolve().parents[2])


def _leaky(
    state_dir: Path | None, seconds: float, rate: float, target_mb: float, name: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = ROOT
    app = [sys.executable, LEAKY, str(seconds), str(rate)]
    if state_dir is None:
        cmd = app
    else:
        cmd = [
            sys.executable,
            "-c",
            "from hivemind.entry import main; main()",
            "run",
            "--target-mb",
            str(target_mb),
            "--name",
            name,
            "--state-dir",
            str(state_dir),
            "--",
            *app,
        ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_leaking_process_is_kept_under_target(swarm: Swarm, state_dir: Path) -> None:
    target = 160.0
    unguarded = _result(_leaky(None, 5, 60, target, "free"))
    assert unguarded["guarded"] is False
    assert float(unguarded["peak_mb"]) > target * 1.25  # type: ignore[arg-type]

    proc = _leaky(state_dir, 6, 60, target, "leaky")
    assert wait_for(lambda: any(t.name == "leaky" for t in collect_status(state_dir).targets), 10)
    guarded = _result(proc)
    assert guarded["guarded"] is True
    assert float(guarded["peak_mb"]) <= target * 1.1, guarded  # type: ignore[arg-type]
    assert swarm.redis is not None
    counters = {
        k.decode(): int(float(v)) for k, v in swarm.redis.hgetall(swarm.keys.counters).items()
    }
    assert counters["acks"] >= 1 and counters["bytes_freed"] > 50 * 2**20, counters
    assert int(swarm.redis.hget(swarm.keys.latency, "count") or 0) >= 1
    sid = collect_status(state_dir).session_id
    snap = SessionStore(swarm.redis, swarm.keys).snapshot(sid)
    assert snap.counters.get("decision", 0) >= 1 and snap.counters.get("ack", 0) >= 1
    assert any(k.startswith("leaky|evict_caches") for k in snap.learned)
    # The target leaves status when it exits.
    assert wait_for(lambda: all(t.name != "leaky" for t in collect_status(state_dir).targets), 10)


def test_loop_goes_on_after_the_coordinator_is_killed(swarm: Swarm, state_dir: Path) -> None:
    assert swarm.redis is not None
    proc = _leaky(state_dir, 10, 40, 150.0, "victim")
    try:
        assert wait_for(lambda: int(swarm.redis.hget(swarm.keys.counters, "acks") or 0) >= 1, 15)  # type: ignore[union-attr]
        coordinator = next(
            a for a in collect_status(state_dir, 0.2).agents if a.role == "coordinator"
        )
        assert coordinator.pid is not None
        os.kill(coordinator.pid, signal.SIGKILL)
        t_kill = time.monotonic()

        def back() -> bool:
            c = next(a for a in collect_status(state_dir, 0.2).agents if a.role == "coordinator")
            return c.restarts == 1 and c.alive and c.pid != coordinator.pid

        assert wait_for(back, 30, 0.1)
        restart_s = time.monotonic() - t_kill
        acks = int(swarm.redis.hget(swarm.keys.counters, "acks") or 0)
        assert wait_for(lambda: int(swarm.redis.hget(swarm.keys.counters, "acks") or 0) > acks, 15)  # type: ignore[union-attr]
        print(f"coordinator back in {restart_s:.2f}s")
    finally:
        proc.kill()
        proc.wait()


def test_restore_hands_a_session_back_to_the_running_coordinator(
    swarm: Swarm, state_dir: Path
) -> None:
    from hivemind.coordinator.coordinator import Coordinator
    from hivemind.coordinator.sessions.recorder import request_restore

    assert swarm.redis is not None
    store = SessionStore(swarm.redis, swarm.keys)
    first = collect_status(state_dir).session_id
    assert first == swarm.session_id
    old, _ = store.ensure("old-session", {"source": "test"})
    store.learned_record(old, "app|evict_caches:1", 64 * 2**20, 3.0)
    store.set_level(old, "aggressive")
    key = read_secret(state_dir)  # the control message is sealed
    assert request_restore(swarm.redis, swarm.keys, old, key=key, timeout_s=10) is True
    assert collect_status(state_dir).session_id == old
    info = Coordinator.lookup(swarm.keys.ns).ping()
    assert info["session_id"] == old
    assert collect_status(state_dir).level == "aggressive"


def test_swarm_up_resumes_a_session_by_id(ray_local: None, tmp_path: Path, namespace: str) -> None:
    state = tmp_path / "st"
    with Swarm(load_settings(state_dir=state, namespace=namespace)) as first:
        sid = first.session_id
        assert first.session_created
    with Swarm(load_settings(state_dir=state, namespace=namespace, session_id=sid)) as again:
        assert again.session_id == sid and not again.session_created
        assert collect_status(state).session_id == sid
        assert again.redis is not None
        snap = SessionStore(again.redis, again.keys).snapshot(sid)
        assert snap.counters.get("swarm", 0) >= 2  # created, then resumed
