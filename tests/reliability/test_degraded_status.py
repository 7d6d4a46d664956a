"""`swarm status` tells the truth about a swarm whose Redis is down: one line, exit 1, JSON.

A recorded swarm (the test holds its lock, like a running supervisor) whose
Redis socket answers nothing, with a health record saying Redis is down:
no Ray, no server to kill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hivemind.swarm.health import Health, write_health
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info

HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]


def _status(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    return subprocess.run(
        [*HIVEMIND, "swarm", "status", "--state-dir", str(state), *extra],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_status_of_a_swarm_whose_redis_is_down(tmp_path: Path) -> None:
    state = tmp_path / ".hivemind"
    lock = SupervisorLock(state)
    lock.acquire()
    try:
        write_info(
            state,
            SwarmInfo(
                pid=os.getpid(),
                namespace="deg",
                redis_url=f"unix://{tmp_path}/nothing.sock",
                embedded=True,
                state="ready",
                session_id="s-deg",
            ),
        )
        health = Health()
        health.part("redis").restarts = 1
        health.mark_down("redis", "redis-server 4242 exited", now=time.time() - 2.0)
        write_health(state, health)
        r = _status(state)
        assert r.returncode == 1 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("hivemind: swarm degraded: redis down for ")
        assert "redis-server 4242 exited" in lines[0] and "1 restart(s)" in lines[0]
        j = _status(state, "--json")
        assert j.returncode == 1
        doc = json.loads(j.stdout)
        assert doc["health"] == "degraded" and doc["redis"]["reachable"] is False
        assert doc["down"][0]["component"] == "redis" and doc["down"][0]["down_s"] >= 2.0
        assert doc["restarts"]["redis"] == 1 and doc["session_id"] == "s-deg"
    finally:
        lock.release()
    gone = _status(state)
    assert gone.returncode == 1 and "no swarm is running" in gone.stderr
