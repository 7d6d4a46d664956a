"""RSS checked after the app's own collections (RiseTrigger), and how the guard arms it."""

from __future__ import annotations

import gc
import os
import select
import threading
import time
from pathlib import Path

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.target.runtime import RISE_STEP, Runtime
from hivemind.swarm.target.trigger import RiseTrigger
from tests.conftest import offline_runtime, wait_for

MB = 2**20


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_an_armed_trigger_reads_rss_after_a_collection_and_wakes_the_guard_once() -> None:
    clock = [0.0]
    t = RiseTrigger(gap_s=0.001, clock=lambda: clock[0]).open()
    try:
        gc.collect(0)
        assert t.checks == 0, "disarmed: no read"
        t.arm_bytes = current_rss_bytes() + 512 * MB
        clock[0] = 1.0
        gc.collect(0)
        assert (t.checks, t.fired) == (1, 0), "under the armed level: read, no wake-up"
        gc.collect(0)
        assert t.checks == 1, "within gap_s of the last read: none"
        t.arm_bytes = 1
        clock[0] = 2.0
        gc.collect(0)
        assert (t.checks, t.fired, t.arm_bytes) == (2, 1, 0), "reached: woken once, disarmed"
        assert t.event.is_set() and _readable(t.fileno())
        t.drain()
        assert not _readable(t.fileno())
        clock[0] = 3.0
        gc.collect(0)
        assert t.checks == 2, "the guard arms it again; until then nothing"
        t.arm_bytes, t.ignore_thread = 1, threading.get_ident()
        clock[0] = 4.0
        gc.collect(0)
        assert (t.checks, t.fired) == (2, 1), "the guard's own collections read nothing"
    finally:
        t.close()
    assert t._callback not in gc.callbacks and t.fileno() == -1
    t.close()  # idempotent


def test_the_callback_never_raises_into_the_app() -> None:
    t = RiseTrigger(clock=lambda: 1 / 0).open()  # a clock that raises
    try:
        t.arm_bytes = 1
        gc.collect(0)  # would raise through gc.collect if the callback did
        assert t.fired == 0
    finally:
        t.close()


def _runtime(tmp_path: Path, target_mb: float, name: str) -> Runtime:
    return offline_runtime(tmp_path / "none", name, target_mb)


def _count_reads(rt: Runtime) -> list[int]:
    """Count the guard's own RSS reads between samples (its fast checks): ``[n]``."""
    polls = [0]
    fast_check = rt._fast_check

    def counted() -> None:
        polls[0] += 1
        fast_check()

    rt._fast_check = counted  # type: ignore[method-assign]
    return polls


def test_the_guard_arms_the_next_rise_the_band_or_the_next_level(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, 100, "arm")
    rt._update_near(10.0, 50 * MB)
    assert not rt._near and rt.trigger.arm_bytes == 0, "far from the target: disarmed"
    rt._update_near(10.5, 75 * MB)
    assert rt._near and rt.trigger.arm_bytes == 75 * MB + int(RISE_STEP * 100 * MB)
    band = int(rt.controller.config.collect * 100 * MB)
    rt._update_near(11.0, band - 100_000)
    assert rt.trigger.arm_bytes == band, "the collect band comes before the next step"
    rt._update_near(11.5, 90 * MB - 1000)
    assert rt.trigger.arm_bytes == 90 * MB, "so does the next level's edge"


def test_an_app_growing_by_tracked_objects_wakes_its_guard_instead_of_being_polled(
    tmp_path: Path,
) -> None:
    """Near the target, an app churning lists runs young collections: those read RSS
    for the guard, which then does not poll at 200 Hz; when the app grows over the
    collect band, one of its collections wakes the guard, which collects."""
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.collect()
    base = current_rss_bytes()
    rt = _runtime(tmp_path, base / 0.75 / MB, "grower")  # RSS at 75 %, under the band
    polls = _count_reads(rt)
    rt.start()
    held: list[object] = []
    try:
        assert wait_for(lambda: rt._near, 5)
        churn_until = time.monotonic() + 0.2
        while time.monotonic() < churn_until:  # let the app's collections take over
            held = [[i, str(i)] for i in range(2000)]
        polls[0], checks = 0, rt.trigger.checks
        churn_until = time.monotonic() + 1.0
        while time.monotonic() < churn_until:  # flat: the same working set, rebuilt
            held = [[i, str(i)] for i in range(2000)]
        assert rt.trigger.checks - checks >= 20, "the app's collections read RSS"
        # Trusting the app's collections the guard reads RSS itself at most on a wake-up;
        # polling, it would read it up to 200 times in that second.
        assert polls[0] <= 2, f"the guard polled {polls[0]} times in 1 s"
        held = []
        stop = time.monotonic() + 10
        while rt.stats["local_collections"] == 0 and time.monotonic() < stop:
            held.append([[i, str(i)] for i in range(2000)])  # ~0.3 MB of tracked objects
            if len(held) > 400:
                held.clear()  # never leave the band far behind: a bounded working set
        assert rt.stats["local_collections"] >= 1, "the guard collected"
        assert rt.trigger.fired >= 1, (rt.trigger.checks, polls)
    finally:
        held.clear()
        rt.stop()
        gc.set_threshold(*thresholds)
    assert rt.trigger.fileno() == -1, "stop closed the pipe"


def test_an_app_with_its_collector_disabled_is_watched_whatever_it_collected(
    tmp_path: Path,
) -> None:
    """A batch job with gc.disable() that calls gc.collect() itself now and then: those
    collections say nothing of its next growth, so RSS is still read at 200 Hz: by the
    watcher process, not by the guard's thread; by that thread if there is no watcher."""
    enabled = gc.isenabled()
    gc.collect()
    for watcher in (True, False):
        rt = _runtime(tmp_path, current_rss_bytes() / 0.75 / MB, "batch")
        rt.watcher.failed = not watcher  # as if it could not start
        polls = _count_reads(rt)
        gc.disable()
        rt.start()
        try:
            assert wait_for(lambda rt=rt: rt._near, 5)
            checks = rt.trigger.checks
            for _ in range(5):
                gc.collect()  # the app's own, explicit
                time.sleep(0.1)
            assert rt.trigger.checks > checks, "they did read RSS"
            polls[0] = 0
            time.sleep(0.5)
            if watcher:
                assert rt.watcher.running and rt.watcher._sent[0] > 0, "the watcher is armed"
                assert polls[0] <= 2, f"{polls[0]} reads in 0.5 s by the guard's thread"
            else:
                assert polls[0] >= 20, f"{polls[0]} reads in 0.5 s (200 Hz: ~100; trusting: 0)"
        finally:
            rt.stop()
            if enabled:
                gc.enable()
        assert rt.watcher.pid == 0 and not rt.watcher.running, "stop ended the watcher"


def test_a_forked_child_drops_its_parents_trigger(tmp_path: Path) -> None:
    """The child's copy of the parent's hook would wake the parent's guard through the
    shared pipe: the fork hook removes it (the child gets its own runtime)."""
    from hivemind.swarm.target import attach as attach_mod

    rt = _runtime(tmp_path, 10_000, "forker").start()
    saved = attach_mod._current
    attach_mod._current = rt
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the parent's hook is gone
            attach_mod._after_fork_in_child()
            ok = rt.trigger._callback not in gc.callbacks and rt.trigger.fileno() == -1
            child = attach_mod._current
            if child is not None:
                child.stop()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert rt.trigger._callback in gc.callbacks, "the parent keeps its own"
    finally:
        attach_mod._current = saved
        rt.stop()


def test_the_command_reader_stops_waiting_when_woken() -> None:
    """With a swarm the guard waits on its command socket: a wake-up ends that wait
    at once, and a command already there is still read whole."""
    import socket

    from hivemind.swarm.target.inbox import PushReader

    a, b = socket.socketpair()
    t = RiseTrigger().open()
    try:
        reader = PushReader(a, wake=t)
        t.wake()
        started = time.monotonic()
        assert reader.read(5.0) is None and time.monotonic() - started < 1.0
        assert not _readable(t.fileno()), "drained"
        b.sendall(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n")
        t.wake()
        got = reader.read(5.0) or reader.read(5.0)
        assert got == [b"message", b"c", b"hi"]
    finally:
        t.close()
        a.close()
        b.close()
