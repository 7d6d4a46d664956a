"""Chaos with real processes: a hung guarded process (Redis SIGKILLed: test_heal_cli.py).

The agents here are the in-process cores (the classes the Ray actors wrap),
so these run without Ray; guarded processes are real ``hivemind run``
subprocesses that find the swarm through ``swarm.json``. Every process is
stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from hivemind.swarm.state import SwarmInfo, write_info
from tests.conftest import wait_for
from tests.reliability.inproc import InProcessSwarm

pytestmark = pytest.mark.slow

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
LEAK = (
    "import sys, time\nfrom hivemind.agents.render_cache import RenderCache\n"
    "c = RenderCache(max_size=100000, ttl_seconds=3600)\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "i = 0\nwhile time.monotonic() < end:\n    c.set(i, str(i % 10) * 65536)\n    i += 1\n"
    "    time.sleep(0.005)\nprint('done', i)\n"
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, InProcessSwarm]]:
    state = tmp_path / ".hivemind"
    server = EmbeddedRedis(state)
    server.start()
    ns = f"ch{uuid.uuid4().hex[:8]}"
    swarm = InProcessSwarm(url=server.url, namespace=ns, secret=read_secret(state), state_dir=state)
    write_info(
        state,
        SwarmInfo(
            pid=os.getpid(), namespace=ns, redis_url=server.url, embedded=True, state="ready"
        ),
    )
    try:
        swarm.start()
        yield server, swarm
    finally:
        swarm.stop()
        server.stop()


def _guarded(
    state: Path, name: str, seconds: float, target_mb: float = 90
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    return subprocess.Popen(
        [HIVEMIND, "run", "--target-mb", str(target_mb), "--name", name, "--state-dir", str(state),
         "--", sys.executable, "-c", LEAK, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    """Kill each ``hivemind run`` and its guarded child, by pid."""
    for p in procs:
        if p.poll() is None:
            kids = psutil.Process(p.pid).children(recursive=True)
            for pid in [k.pid for k in kids] + [p.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
        p.communicate(timeout=10)


def test_a_hung_guarded_process_is_timed_out_and_the_others_go_on(
    world: tuple[EmbeddedRedis, InProcessSwarm],
) -> None:
    server, swarm = world
    state, keys = server.state_dir, swarm.keys
    hung, fine = _guarded(state, "hung", 20), _guarded(state, "fine", 20)
    try:
        c = connect(server.url)
        assert wait_for(lambda: c.exists(keys.target("hung")) and c.exists(keys.target("fine")), 15)
        os.kill(hung.pid, signal.SIGSTOP)  # `hivemind run` itself
        child = [p.pid for p in psutil.Process(hung.pid).children()]
        for pid in child:
            os.kill(pid, signal.SIGSTOP)
        # Make it look over target to the swarm: one sample on its behalf.
        from hivemind.swarm.messages import MemorySample
        from hivemind.swarm.redis.bus import wire
        from hivemind.swarm.secret import read_secret

        c.publish(  # sealed with the project's key, as the target itself would
            keys.samples,
            wire(
                MemorySample(
                    target="hung", pid=child[0], seq=1, rss_bytes=2 << 30, target_bytes=1 << 30
                ),
                read_secret(state),
            ),
        )
        assert wait_for(lambda: int(c.hget(keys.target_counters("hung"), "timeouts") or 0) >= 1, 15)
        fine_acks = int(c.hget(keys.target_counters("fine"), "acks") or 0)
        assert wait_for(
            lambda: int(c.hget(keys.target_counters("fine"), "acks") or 0) > fine_acks, 10
        )
        timeouts = int(c.hget(keys.target_counters("hung"), "timeouts") or 0)
        print(f"CHAOS hung target: timed out {timeouts} decision(s); the other kept acking")
        for pid in [hung.pid, *child]:
            os.kill(pid, signal.SIGCONT)
        c.close()
    finally:
        _reap([hung, fine])
