"""Stopping and restarting a swarm is bounded in time, even when Ray's GCS is wedged or dead.

Ray's calls to its GCS have no deadline of their own: ``ray.nodes()`` (the
supervisor's periodic benchmarker placement) waits for ever on a GCS that is
stopped, and 60 s (``gcs_rpc_server_reconnect_timeout_s``, after which Ray
ends the process) on one that is dead. The supervisor's main thread must
never be the one waiting, or its SIGTERM handler never runs. Here the GCS
is SIGSTOPped for 3 s first, so a placement call is waiting on it when the
fault comes. Real ``swarm up --detach``, real Ray, real Redis; every process
is ended by pid at the end.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.heal_harness import CliSwarm, kill
from hivemind.swarm.errors import NotRunningError
from hivemind.swarm.health import read_health
from hivemind.swarm.lifecycle.detach import stop_swarm
from hivemind.swarm.redis.server import pid_alive
from hivemind.swarm.state import SupervisorLock
from tests.conftest import wait_for


def _gone(pid: int, within_s: float) -> float | None:
    t0 = time.monotonic()
    if wait_for(lambda: not pid_alive(pid), within_s):
        return time.monotonic() - t0
    return None


@pytest.mark.ray
@pytest.mark.slow
def test_a_wedged_or_dead_gcs_never_holds_up_a_restart_or_a_stop(tmp_path: Path) -> None:
    swarm = CliSwarm(tmp_path, f"b{uuid.uuid4().hex[:8]}")
    swarm.up()
    try:
        # 1. The GCS dies while a placement call waits on it: the supervisor still
        #    hands over to its keeper at once, and the new one is healthy.
        first = swarm.info()
        gcs = swarm.head_pids()["gcs_server"]
        kill(gcs, signal.SIGSTOP)
        time.sleep(3.0)  # a placement tick (every 2 s) now waits on the GCS
        kill(gcs)
        t0 = time.monotonic()
        took = _gone(first.pid, 20.0)
        assert took is not None, "the supervisor did not hand over within 20s of losing its GCS"
        assert swarm.wait_healthy({first.pid, gcs}, 60.0, t0) is not None, read_health(swarm.state)
        health = read_health(swarm.state)
        assert health is not None and health.part("ray_head").restarts == 1, health

        # 2. SIGTERM while the GCS is wedged: the supervisor stops within its bound
        #    (Ray's part of the stop is given up and its processes killed by pid),
        #    and the keeper and every recorded process follow.
        second = swarm.info()
        swarm.remember()
        kill(swarm.head_pids()["gcs_server"], signal.SIGSTOP)
        time.sleep(3.0)
        kill(second.pid, signal.SIGTERM)
        took = _gone(second.pid, 35.0)
        assert took is not None, "SIGTERM did not stop the supervisor within 35s"
        assert second.keeper_pid is not None and _gone(second.keeper_pid, 15.0) is not None
        assert wait_for(lambda: not any(pid_alive(p) for p in swarm.seen), 15.0), [
            p for p in swarm.seen if pid_alive(p)
        ]
        assert not (swarm.state / "swarm.json").exists()
        print(f"\nBOUNDED STOP: SIGTERM with a wedged GCS, supervisor gone after {took:.1f}s")
    finally:
        swarm.kill_leftovers()


_HOLDER = """
import signal, sys, time
from pathlib import Path
from hivemind.swarm.state import SupervisorLock
if sys.argv[4] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
SupervisorLock(Path(sys.argv[3])).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(
    state: Path, mode: str, name: tuple[str, str] = ("swarm", "up")
) -> subprocess.Popen[str]:
    """A process that holds the state folder's lock, named like a foreground ``swarm up``
    (``swarm down`` signals only a keeper, a supervisor or ``swarm up``); no swarm.json."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, *name, str(state), mode],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("mode", ["stops", "deaf"])
def test_down_stops_the_lock_holder_when_swarm_json_is_gone(tmp_path: Path, mode: str) -> None:
    """``swarm down`` finds the swarm by its lock (which names its holder), not only by
    ``swarm.json``: a supervisor that removed its record and then hung is still stopped."""
    state = tmp_path / ".hivemind"
    proc = _holder(state, mode)
    try:
        assert SupervisorLock.held(state) and not (state / "swarm.json").exists()
        t0 = time.monotonic()
        info = stop_swarm(state, timeout_s=2.0)
        assert info.pid == proc.pid
        assert proc.wait(timeout=10) != 0
        assert not SupervisorLock.held(state)
        assert time.monotonic() - t0 < 15.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_down_never_signals_a_lock_holder_that_is_not_a_swarm(tmp_path: Path) -> None:
    state = tmp_path / ".hivemind"
    proc = _holder(state, "stops", name=("not", "ours"))
    try:
        with pytest.raises(NotRunningError):
            stop_swarm(state, timeout_s=2.0)
        assert proc.poll() is None and SupervisorLock.held(state)
    finally:
        proc.kill()
        proc.wait()
