"""Chaos with real processes: Redis SIGKILLed under guarded processes and hooks, a hung target.

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
import threading
import time
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


def test_redis_sigkill_under_five_guarded_processes_and_hooks(
    world: tuple[EmbeddedRedis, InProcessSwarm],
) -> None:
    server, swarm = world
    state, keys = server.state_dir, swarm.keys
    procs = [_guarded(state, f"g{i}", 14) for i in range(5)]
    hook_env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    hook_env |= {"HIVEMIND_REDIS_URL": server.url, "HIVEMIND_NAMESPACE": keys.ns}
    hook_ok: list[tuple[float, int]] = []  # (time, n) of each hook write that exited 0
    stop_hooks = threading.Event()

    def fire_hooks() -> None:
        n = 0
        while not stop_hooks.is_set():
            n += 1
            r = subprocess.run(
                [HIVEMIND, "hooks", "notify", "--message", f"m{n}", "--session-id", "chaos",
                 "--strict", "--state-dir", str(state / "hooks-state")],
                env=hook_env, capture_output=True, timeout=30, check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if r.returncode == 0:
                hook_ok.append((time.monotonic(), n))
            time.sleep(0.05)

    hooks = threading.Thread(target=fire_hooks, daemon=True)
    try:
        c = connect(server.url)
        assert wait_for(lambda: len(list(c.scan_iter(match=keys.target_pattern))) == 5, 15)
        hooks.start()
        assert wait_for(lambda: int(c.hget(keys.counters, "acks") or 0) >= 3, 20)
        time.sleep(1.5)
        acks_safe = int(c.hget(keys.counters, "acks") or 0)
        hooks_safe = len(hook_ok)
        sid = swarm.coordinator.session_id
        stream_safe = int(c.xlen(keys.session_events(sid)))
        time.sleep(1.1)  # everything above is now >1 s old: AOF everysec has it
        c.close()
        pid = server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        time.sleep(2.0)
        assert all(p.poll() is None for p in procs), "a guarded process died with Redis"
        server.start()
        t_back = time.monotonic()
        c = connect(server.url)
        # Runtimes rejoin: every target hash is written again (they expire in 5 s, so
        # after a 2 s outage only the reconnected runtimes refresh them).
        c.delete(*[k for k in c.scan_iter(match=keys.target_pattern)] or ["hm:none"])
        assert wait_for(lambda: len(list(c.scan_iter(match=keys.target_pattern))) == 5, 5, 0.02)
        rejoin_s = time.monotonic() - t_back
        assert rejoin_s < 2.5, rejoin_s
        assert int(c.hget(keys.counters, "acks") or 0) >= acks_safe
        assert int(c.xlen(keys.session_events(sid))) >= stream_safe
        hook_events = int(c.hget(keys.session("chaos"), "count.events") or 0)
        assert hook_events >= hooks_safe, (hook_events, hooks_safe)
        # The loop goes on after the outage.
        acks_after = int(c.hget(keys.counters, "acks") or 0)
        assert wait_for(lambda: int(c.hget(keys.counters, "acks") or 0) > acks_after, 10)
        stop_hooks.set()
        hooks.join(30)
        outs = [p.communicate(timeout=30) for p in procs]
        assert [p.returncode for p in procs] == [0] * 5, outs
        assert all("Traceback" not in err for _, err in outs)
        print(
            f"CHAOS redis-kill: 5 guarded processes survived, rejoined in {rejoin_s:.2f}s, "
            f"acks kept {acks_safe}, hook writes kept {hooks_safe}/{hook_events}, "
            f"outage {t_back - t_kill:.1f}s"
        )
        c.close()
    finally:
        stop_hooks.set()
        _reap(procs)


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
