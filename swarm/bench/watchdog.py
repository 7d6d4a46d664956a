"""The baseline every guard must beat: a watchdog thread a user writes in ten lines.

Every 50 ms: if RSS is above 80 % of the target, ``gc.collect()`` and
``malloc_trim(0)``. :func:`start_watchdog` is exactly what docs/bench.md
shows (Linux with glibc; elsewhere the trim is skipped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time

__all__ = ["WATCHDOG_THREAD", "start_watchdog"]

WATCHDOG_THREAD = "watchdog"


def start_watchdog(target_mb: float, every_s: float = 0.05) -> threading.Thread:
    """Start the watchdog as a daemon thread; returns the thread."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    trim = getattr(libc, "malloc_trim", lambda pad: 0)
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def loop() -> None:
        while True:
            with open("/proc/self/statm") as f:
                rss_mb = int(f.read().split()[1]) * page_mb
            if rss_mb > 0.8 * target_mb:
                gc.collect()
                trim(0)
            time.sleep(every_s)

    thread = threading.Thread(target=loop, name=WATCHDOG_THREAD, daemon=True)
    thread.start()
    return thread
