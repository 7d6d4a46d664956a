"""A swarm that heals itself: faults on the real CLI swarm, recovery by the product alone.

One ``hivemind swarm up --detach`` (keeper, supervisor, embedded
redis-server, Ray head, four actors) with guarded processes and hooks
firing. Each test SIGKILLs (or SIGSTOPs) one of its processes and asserts
the swarm is healthy again by itself: no code here restarts anything.
Bounds are generous (a loaded 2-core machine); the measured times are in
``benchmarks/results/reliability.md`` (``python -m benchmarks.bench_reliability``).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.heal_harness import ROLES, CliSwarm, Guarded, HookFire, kill
from hivemind.swarm.health import read_health
from hivemind.swarm.observe.status import collect_status
from hivemind.swarm.redis.server import pid_alive
from tests.conftest import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

HOOK_SID = "heal-hooks"


class World:
    def __init__(self, swarm: CliSwarm, guarded: Guarded, hooks: HookFire) -> None:
        self.swarm, self.guarded, self.hooks = swarm, guarded, hooks
        self.session = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("heal")
    swarm = CliSwarm(root, f"h{uuid.uuid4().hex[:8]}")
    swarm.up()
    guarded = Guarded(swarm, n=3)
    hooks = HookFire(swarm, HOOK_SID, rate_hz=2.0)
    w = World(swarm, guarded, hooks)
    try:
        w.session = swarm.info().session_id
        guarded.start()
        assert wait_for(lambda: guarded.joined() == guarded.n, 60), "guarded never joined"
        # Warm: each has taken a command (its first one loads the message models).
        assert wait_for(lambda: guarded.acked() == guarded.n, 120), "never acked"
        hooks.start()
        yield w
    finally:
        hooks.stop()
        guarded.stop()
        swarm.down()
        swarm.kill_leftovers()


def _back(w: World, killed: set[int], bound_s: float, t0: float) -> float:
    took = w.swarm.wait_healthy(killed, bound_s, t0)
    assert took is not None, (
        f"not healthy {bound_s}s after the kill: {read_health(w.swarm.state)}; "
        f"agents {w.swarm.agents()}"
    )
    assert w.guarded.alive() == w.guarded.n, "a guarded process died"
    return took


def test_redis_sigkilled_is_back_by_itself_and_nothing_acked_is_lost(world: World) -> None:
    w = world
    acks = w.swarm.counter("acks")
    time.sleep(1.1)  # everything counted above is older than 1 s: in the AOF
    pid = w.swarm.info().redis_pid
    assert pid is not None
    kill(pid)
    t0 = time.monotonic()
    took = _back(w, {pid}, 10.0, t0)
    assert w.swarm.counter("acks") >= acks
    health = read_health(w.swarm.state)
    assert health is not None and health.part("redis").restarts == 1
    print(f"\nHEAL redis-server SIGKILL: healthy again after {took:.2f}s")


def test_a_hung_redis_is_replaced(world: World) -> None:
    """SIGSTOP: the server lives but answers nothing; the watcher replaces it after 5 s.

    (What ``swarm status`` says meanwhile is tested in test_degraded_status.py:
    here, on a loaded machine, a CLI call may take longer than the outage.)
    """
    w = world
    pid = w.swarm.info().redis_pid
    assert pid is not None
    kill(pid, signal.SIGSTOP)
    took = _back(w, {pid}, 60.0, time.monotonic())
    assert not pid_alive(pid)
    assert collect_status(w.swarm.state).restarts["redis"] == 2
    print(f"\nHEAL redis-server hung (SIGSTOP): replaced, healthy after {took:.2f}s")


def test_each_actor_sigkilled_is_back(world: World) -> None:
    w = world
    times = {}
    for role in ROLES:
        pid = w.swarm.agents()[role][0]
        kill(pid)
        times[role] = _back(w, {pid}, 30.0, time.monotonic())
    health = read_health(w.swarm.state)
    assert health is not None and all(health.part(r).restarts == 1 for r in ROLES)
    print("\nHEAL actor SIGKILL: " + ", ".join(f"{r} {s:.2f}s" for r, s in times.items()))


@pytest.mark.parametrize("process", ["raylet", "gcs_server"])
def test_ray_head_process_sigkilled_brings_the_swarm_back_on_the_same_session(
    world: World, process: str
) -> None:
    w = world
    before = w.swarm.info()
    pid = w.swarm.head_pids()[process]
    kill(pid)
    took = _back(w, {pid, before.pid}, 180.0, time.monotonic())
    after = w.swarm.info()
    assert after.session_id == w.session and after.keeper_pid == before.keeper_pid
    assert after.pid != before.pid
    assert all(not pid_alive(p) for p in before.ray_pids), "old Ray processes left running"
    assert wait_for(lambda: w.guarded.joined() == w.guarded.n, 30), "guarded did not rejoin"
    print(f"\nHEAL Ray {process} SIGKILL: swarm back on session {w.session} after {took:.2f}s")


def test_supervisor_sigkilled_is_started_again_by_its_keeper(world: World) -> None:
    w = world
    before = w.swarm.info()
    kill(before.pid)
    took = _back(w, {before.pid}, 180.0, time.monotonic())
    after = w.swarm.info()
    assert after.session_id == w.session and after.pid != before.pid
    assert after.redis_pid == before.redis_pid  # Redis kept running throughout
    st = collect_status(w.swarm.state)
    assert st.health == "ok" and st.restarts["supervisor"] == 1, st.problem
    assert st.restarts["ray_head"] == 2 and st.restarts["redis"] == 2, st.restarts
    print(f"\nHEAL supervisor SIGKILL: started again, healthy after {took:.2f}s")


def test_through_it_all_guarded_kept_running_and_no_hook_write_was_lost(world: World) -> None:
    w = world
    assert wait_for(lambda: w.guarded.joined() == w.guarded.n, 30)
    acks = w.swarm.counter("acks")
    assert wait_for(lambda: w.swarm.counter("acks") > acks, 60), "the loop did not go on"
    w.hooks.stop()
    assert w.hooks.ok and not w.hooks.failed, w.hooks.failed[:3]
    # A last hook reaches Redis and replays anything still journaled.
    w.swarm.cli("hooks", "notify", "--message", "last", "--session-id", HOOK_SID, "--no-stdin")
    assert w.hooks.lost() == [], f"{len(w.hooks.lost())} of {len(w.hooks.ok)} lost"
    c = w.swarm.client()
    try:
        kinds = [f[b"kind"] for _, f in c.xrange(w.swarm.keys.session_events(w.session))]
    finally:
        c.close()
    assert kinds.count(b"restart") >= 9, kinds.count(b"restart")  # every restart is an event
    print(f"\nHEAL hooks: {len(w.hooks.ok)} exited 0, 0 lost; guarded {w.guarded.n}/{w.guarded.n}")


def test_down_right_after_redis_died_stops_every_process(world: World) -> None:
    w = world
    w.hooks.stop()
    w.guarded.stop()
    w.swarm.remember()
    pid = w.swarm.info().redis_pid
    assert pid is not None
    kill(pid)
    r, left = w.swarm.down()
    assert r.returncode == 0, r.stderr
    assert left == [], f"still running right after `swarm down` returned: {left}"
    assert "no swarm is running" in w.swarm.cli("swarm", "status").stderr


def test_a_crash_loop_stops_cleanly_with_one_line(tmp_path: Path) -> None:
    swarm = CliSwarm(tmp_path, f"c{uuid.uuid4().hex[:8]}")
    swarm.up()
    try:
        keeper = swarm.info().keeper_pid
        assert keeper is not None
        killed: list[int] = []
        deadline = time.monotonic() + 60
        while pid_alive(keeper) and time.monotonic() < deadline:
            info = swarm.info() if (swarm.state / "swarm.json").exists() else None
            if info is not None and info.pid not in killed and pid_alive(info.pid):
                swarm.remember()
                kill(info.pid)
                killed.append(info.pid)
            time.sleep(0.05)
        assert not pid_alive(keeper), "the keeper went on restarting"
        assert len(killed) == 4, killed
        lines = [
            ln for ln in (swarm.state / "swarm.log").read_text().splitlines() if "hivemind:" in ln
        ]
        assert "swarm stopped: it failed 4 times within 60s" in lines[-1], lines[-3:]
        assert wait_for(lambda: not any(pid_alive(p) for p in swarm.seen), 15), [
            p for p in swarm.seen if pid_alive(p)
        ]
        status = swarm.cli("swarm", "status")
        assert status.returncode == 1 and "it failed 4 times" in status.stderr, status.stderr
    finally:
        swarm.kill_leftovers()
