"""The watcher process: reads this process's RSS and wakes the guard at a level."""

from __future__ import annotations

import gc
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.procs import cpu_seconds
from hivemind.swarm.target.watcher import RssWatcher
from tests.conftest import wait_for
from tests.swarm.test_trigger import _count_reads, _runtime

MB = 2**20


def _readable(fd: int, timeout_s: float) -> bool:
    return bool(select.select([fd], [], [], timeout_s)[0])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cpu_seconds_reads_utime_and_stime_after_a_name_that_holds_a_parenthesis() -> None:
    tick = os.sysconf("SC_CLK_TCK")
    rest = " ".join(["S", *["0"] * 10, str(3 * tick), str(2 * tick), *["0"] * 30])
    assert cpu_seconds(b"4242 (odd) name) " + rest.encode()) == 5.0
    with pytest.raises(IndexError):
        cpu_seconds(b"no stat here")


def test_the_watchers_cpu_is_read_from_its_own_proc_entry_until_it_is_closed() -> None:
    r, w = os.pipe()
    watcher = RssWatcher()
    try:
        assert watcher.cpu_s() == 0.0, "none started"
        assert watcher.start(w)
        watcher.arm(current_rss_bytes() + 256 * MB, 0.0002)  # reads at 5 kHz
        assert wait_for(lambda: watcher.cpu_s() >= 0.02, 10), watcher.cpu_s()
    finally:
        watcher.close()
        os.close(r)
        os.close(w)
    assert watcher.cpu_s() == 0.0, "closed: nothing more is counted"


def test_the_watcher_wakes_at_its_level_once_per_arming_and_ends_with_its_pipe() -> None:
    r, w = os.pipe()
    watcher = RssWatcher()
    try:
        assert watcher.start(w) and watcher.running and watcher.pid > 0
        watcher.arm(current_rss_bytes() + 256 * MB, 0.002)
        assert not _readable(r, 0.3), "under its level: no wake-up"
        watcher.arm(1, 0.002)
        assert _readable(r, 5.0), "reached: woken"
        assert os.read(r, 64) == b"w"
        assert not _readable(r, 0.2), "once per arming: it disarmed itself"
        watcher.arm(1, 0.002)
        assert not _readable(r, 0.2), "the same level again is not sent again ..."
        watcher.rearm()
        watcher.arm(1, 0.002)
        assert _readable(r, 5.0), "... unless re-armed after a wake-up"
        pid = watcher.pid
    finally:
        watcher.close()
        os.close(r)
        os.close(w)
    assert watcher.pid == 0 and not watcher.running
    assert _gone(pid), "closed and reaped"
    watcher.close()  # idempotent


def test_a_helper_whose_guard_let_go_exits_by_itself() -> None:
    """A forked child forgets its parent's helper; the helper ends when the last copy
    of its pipe closes (here: the only one), not when somebody kills it."""
    r, w = os.pipe()
    watcher = RssWatcher()
    try:
        assert watcher.start(w)
        pid = watcher.pid
        watcher.forget()
        assert wait_for(lambda: os.waitpid(pid, os.WNOHANG) != (0, 0), 5), "it exited"
    finally:
        os.close(r)
        os.close(w)


def test_a_watcher_that_cannot_start_says_so_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, w = os.pipe()
    try:
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")
        watcher = RssWatcher()
        assert not watcher.start(w) and watcher.failed and not watcher.running
        monkeypatch.undo()
        assert not watcher.start(w), "not retried"
        watcher.arm(1, 0.002)  # harmless
    finally:
        os.close(r)
        os.close(w)


def test_a_gc_disabled_app_growing_by_bytes_is_seen_by_the_watcher_not_by_polling(
    tmp_path: Path,
) -> None:
    """Near the target, an app with its collector off grows by bytes (no collection
    would ever read RSS): the guard's thread does not poll, the watcher wakes it when
    RSS reaches the collect band, and the guard collects."""
    enabled = gc.isenabled()
    gc.collect()
    base = current_rss_bytes()
    rt = _runtime(tmp_path, base / 0.75 / MB, "bytes")
    polls = _count_reads(rt)
    gc.disable()
    rt.start()
    held: list[bytes] = []
    try:
        assert wait_for(lambda: rt._near and rt.watcher.running, 5)
        time.sleep(0.3)
        polls[0] = 0
        time.sleep(0.5)
        assert polls[0] <= 2, f"flat: the guard's thread read RSS {polls[0]} times"
        band = rt.controller.config.collect * rt.target_bytes
        stop = time.monotonic() + 10
        while rt.stats["local_collections"] == 0 and time.monotonic() < stop:
            if current_rss_bytes() < band + 8 * MB:
                held.append(b"x" * (256 * 1024))
            time.sleep(0.001)
        assert rt.stats["local_collections"] >= 1, "the guard collected"
        assert rt.trigger.drained >= 1, "woken through the pipe"
    finally:
        held.clear()
        rt.stop()
        if enabled:
            gc.enable()


SIGPIPE_APP = r"""
import gc, os, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as CLI tools do, for `| head`
from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.procs import cpu_seconds
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig
gc.disable()
rt = Runtime(RuntimeConfig(name="pipe", target_mb=current_rss_bytes() / 0.75 / 2**20,
             redis_url=None, namespace=None, state_dir=Path(sys.argv[1]), key=None)).start()
deadline = time.monotonic() + 10
while not rt.watcher.running and time.monotonic() < deadline:
    time.sleep(0.01)
pid = rt.watcher.pid
os.kill(pid, signal.SIGKILL)  # the helper dies (the OOM killer, a user's pkill)
os.waitpid(pid, 0)
held = []
while not rt.watcher.failed and time.monotonic() < deadline:
    held.append(b"x" * (1 << 20))  # RSS moves: the guard re-arms, writing to a dead pipe
    time.sleep(0.01)
print("alive", rt.watcher.failed, rt._thread.is_alive())
"""


def test_a_dead_watcher_costs_the_app_nothing_even_with_sigpipe_at_its_default(
    tmp_path: Path,
) -> None:
    """The guard's write to a helper that died comes back as EPIPE (the guard then
    reads RSS itself), never as a SIGPIPE that would kill an app that restored it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", SIGPIPE_APP, str(tmp_path / "none")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.split() == ["alive", "True", "True"], out.stdout
