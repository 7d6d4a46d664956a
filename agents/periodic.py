"""A daemon thread that calls a function at a fixed interval.

Shared by every background monitor in this package so that they all get the
same guarantees: the thread is a daemon (it never keeps the host process
alive), ``start()`` and ``stop()`` are idempotent, ``stop()`` joins the
thread so no thread outlives its owner, and an exception in the callback is
logged and counted instead of raised into the host application.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["PeriodicWorker"]

log = logging.getLogger(__name__)


class PeriodicWorker:
    """Run ``fn()`` every ``interval_s`` seconds on a daemon thread.

    The interval is measured from the end of one call to the start of the
    next, so a slow callback never piles up calls. ``fn`` may return a float
    to ask for a different wait before the next call (used by the GC monitor
    to sleep until its next due collection).
    """

    def __init__(
        self,
        fn: Callable[[], float | None],
        interval_s: float,
        *,
        name: str = "hivemind-periodic",
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._fn = fn
        self.interval_s = float(interval_s)
        self.name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> bool:
        """Start the thread; returns False if it was already running."""
        with self._lock:
            if self.running:
                return False
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name=self.name, daemon=True
            )
            self._thread.start()
            return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and join the thread; returns False if it was not running.

        Safe to call from the worker thread itself (it then does not join).
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                return False
            self._stop.set()
            self._thread = None
        if thread is not threading.current_thread():
            thread.join(timeout)
        return True

    def _run(self, stop: threading.Event) -> None:
        wait = 0.0
        while not stop.wait(wait):
            started = time.monotonic()
            try:
                requested = self._fn()
            except Exception:
                self.errors += 1
                # Log the first few in full, then only count: a broken
                # callback every second must not flood the host's logs.
                if self.errors <= 3:
                    log.exception("%s: periodic callback failed", self.name)
                requested = None
            self.ticks += 1
            spent = time.monotonic() - started
            base = self.interval_s if requested is None else max(0.0, float(requested))
            wait = max(0.0, base - spent) if requested is None else base
