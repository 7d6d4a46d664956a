from __future__ import annotations

import sys
import threading
import time

import psutil
import pytest

from hivemind.agents.memtools import (
    MB,
    current_rss_bytes,
    current_rss_mb,
    malloc_trim,
    malloc_trim_available,
    peak_rss_bytes,
)
from hivemind.agents.periodic import PeriodicWorker


def test_rss_matches_psutil() -> None:
    ours = current_rss_bytes()
    theirs = psutil.Process().memory_info().rss
    assert ours > 0
    assert abs(ours - theirs) < 8 * MB
    assert current_rss_mb() == pytest.approx(current_rss_bytes() / MB, abs=8)
    assert peak_rss_bytes() >= ours - 8 * MB


def test_rss_sees_a_large_allocation() -> None:
    before = current_rss_bytes()
    block = bytearray(64 * MB)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert current_rss_bytes() - before > 48 * MB
    del block


def test_malloc_trim_returns_bool() -> None:
    assert isinstance(malloc_trim(), bool)
    if sys.platform.startswith("linux") and malloc_trim_available():
        # Free a lot of small-ish heap blocks, then trim: glibc reports a release.
        chunks = [bytearray(100_000) for _ in range(500)]
        del chunks
        assert malloc_trim() is True
    with pytest.raises(ValueError):
        malloc_trim(-1)


def test_periodic_worker_lifecycle_and_errors() -> None:
    calls: list[float] = []

    def tick() -> None:
        calls.append(time.monotonic())
        if len(calls) % 3 == 0:
            raise RuntimeError("callback failure")

    w = PeriodicWorker(tick, 0.01, name="test-periodic")
    assert w.stop() is False
    assert w.start() is True and w.start() is False
    deadline = time.monotonic() + 5
    while len(calls) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.running and w.errors >= 3
    thread = [t for t in threading.enumerate() if t.name == "test-periodic"]
    assert len(thread) == 1 and thread[0].daemon
    assert w.stop() is True
    assert not thread[0].is_alive()
    n = len(calls)
    time.sleep(0.05)
    assert len(calls) == n
    with pytest.raises(ValueError):
        PeriodicWorker(tick, 0)


def test_periodic_worker_can_stop_itself() -> None:
    holder: list[PeriodicWorker] = []

    def tick() -> None:
        holder[0].stop()

    w = PeriodicWorker(tick, 0.01, name="self-stop")
    holder.append(w)
    w.start()
    deadline = time.monotonic() + 5
    while w.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not w.running
