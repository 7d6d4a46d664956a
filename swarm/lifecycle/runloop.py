"""How the supervisor process waits, stops and ends, whatever state Ray is in.

:func:`run_until_signalled` blocks the main thread until a signal (or the
loss of the Ray head) while the periodic tick runs in a thread of its own;
:func:`bounded` runs a call that may never return (a Ray call to a wedged or
dead GCS) with a deadline; :func:`exit_now` ends the process without atexit
hooks (Ray's would wait on the GCS). Used by
:mod:`hivemind.swarm.lifecycle.supervisor` and ``swarm up`` in the foreground.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from hivemind.swarm.lifecycle.supervisor import Swarm

__all__ = ["bounded", "exit_now", "run_until_signalled", "tick_loop"]

# These lines are the supervisor's: they keep its logger's name.
log = logging.getLogger("hivemind.swarm.lifecycle.supervisor")


def bounded(fn: Callable[[], None], timeout_s: float, name: str) -> bool:
    """Run ``fn`` in a daemon thread; True if it returned (or raised) within ``timeout_s``.

    For Ray calls that may never return: the caller goes on either way.
    """
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        except Exception as exc:
            log.warning("%s failed: %s", name, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return done.wait(timeout_s)


def tick_loop(tick: Callable[[], None], done: threading.Event) -> None:
    """Call ``tick`` every 0.5 s until ``done`` is set; a failure is logged, never raised."""
    while not done.wait(0.5):
        try:
            tick()
        except Exception as exc:  # the loop goes on; the next tick tries again
            log.warning("tick failed: %s", exc)


def run_until_signalled(
    swarm: Swarm, stop: threading.Event, tick: Callable[[], None] | None = None
) -> None:
    """Block until ``stop`` is set (SIGINT/SIGTERM/SIGHUP set it) or the Ray head is lost.

    ``tick`` runs twice a second in its own daemon thread, never in this
    one: Python runs a signal handler only in the main thread, between two
    bytecodes, so a tick blocked in a Ray call (``ray.nodes()`` waits for
    ever on a stopped GCS) must not be what the main thread is doing.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    done = threading.Event()
    ticker = None
    if tick is not None:
        ticker = threading.Thread(target=tick_loop, args=(tick, done), name="hm-tick", daemon=True)
        ticker.start()
    try:
        while not stop.wait(0.1) and not swarm.head_lost.is_set():
            pass
    finally:
        done.set()
        if ticker is not None:
            ticker.join(timeout=2.0)  # a tick stuck in Ray is left behind (a daemon)


def exit_now(code: int) -> NoReturn:
    """Flush the logs and end the process at once, without atexit hooks.

    Ray's atexit hook calls ``ray.shutdown()``, which waits without bound
    on a wedged GCS (and on any Ray call left running in another thread).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
