"""Checks RSS from the app's own collections, so that the guard need not poll for it.

Near its target the guard reads RSS between its 20 Hz samples, at 200 Hz
(1 kHz while RSS rises toward the collect band), so that it reacts within
milliseconds. Read by the guard's thread, each of those reads is a GIL
hand-off from a busy app to the guard and back, and so is each wake-up of
that thread. On a core the app shares with
another process, that cost the bursty corpus app ~3 % of its work
(same-core pairs), and the guard's thread used more CPU than the ten-line
watchdog's.

An app that grows by allocating objects the collector tracks (lists,
dicts, instances) runs its own young collections as it grows: one every
700 net allocations by default. :class:`RiseTrigger` hooks
``gc.callbacks`` and, while the guard has armed it with an RSS level to
watch for, reads RSS (a few µs ``pread``, in the app's own thread: no
hand-off) after such a collection, at most every ``gap_s``. It wakes the
guard through a pipe when RSS has reached the armed level. While the app's
collections read RSS (within the runtime's ``TRUST_S``), the guard does not
wake between its samples at all; while they are quiet (an app that
allocates bytes, or disabled its collector), a watcher process reads RSS
at the old rate and wakes the guard through the same pipe
(:mod:`~hivemind.swarm.target.watcher`; the guard's thread reads it itself
only if that process could not start).

Nothing here raises into the app: the callback swallows everything.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

from hivemind.agents.memtools import current_rss_bytes

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CHECK_GAP_S", "RiseTrigger"]

CHECK_GAP_S = 0.001  # at most one RSS read a millisecond from the app's collections


class RiseTrigger:
    """RSS checked after the app's collections while armed; wakes the guard at a level.

    The guard thread sets :attr:`arm_bytes` (0: disarmed) and waits either
    on :meth:`fileno` (readable once woken; :meth:`drain` it), with the
    socket it reads commands from, or on :attr:`event` (no socket and no
    watcher process: a calm guard with no swarm loads no ``select``).
    :attr:`drained` counts the drains that found the pipe readable (the
    watcher's wake-ups come that way only). :attr:`checks` counts the reads
    done, :attr:`read_at` says when the last one was (``clock()``, by
    default the guard's ``time.monotonic``), :attr:`fired` counts the
    wake-ups. Collections run by the thread :attr:`ignore_thread` (the
    guard's own) read nothing: they say nothing of whether the app runs any.
    """

    def __init__(self, gap_s: float = CHECK_GAP_S, clock: Any = time.monotonic) -> None:
        self.gap_s = gap_s
        self._clock = clock
        self.arm_bytes = 0
        self.checks = 0
        self.fired = 0
        self.drained = 0  # wake-ups found in the pipe (the trigger's, or the watcher's)
        self.read_at = float("-inf")  # ``clock()`` at the last read (the guard's clock)
        self._fds: tuple[int, int] | None = None
        self.event = threading.Event()  # set by every wake-up
        self.ignore_thread = 0  # the guard's own thread: its collections are not the app's

    def open(self) -> RiseTrigger:
        """Create the wake pipe and install the ``gc.callbacks`` hook (idempotent)."""
        if self._fds is None:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._fds = (r, w)
            gc.callbacks.append(self._callback)
        return self

    def close(self) -> None:
        """Remove the hook and close the pipe (idempotent)."""
        self.arm_bytes = 0
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)
        fds, self._fds = self._fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def fileno(self) -> int:
        """The pipe's read end (readable once woken), or -1 when not open."""
        return self._fds[0] if self._fds is not None else -1

    def wake_fd(self) -> int:
        """The pipe's write end (for :class:`~hivemind.swarm.target.watcher.RssWatcher`),
        or -1 when not open."""
        return self._fds[1] if self._fds is not None else -1

    def wake(self) -> None:
        """Set :attr:`event` and make :meth:`fileno` readable (a full pipe already is)."""
        self.event.set()
        if self._fds is not None:
            with contextlib.suppress(OSError):
                os.write(self._fds[1], b"!")

    def drain(self) -> None:
        """Empty the pipe after a wake-up; :attr:`drained` counts the times it held any."""
        if self._fds is not None:
            with contextlib.suppress(OSError):
                if os.read(self._fds[0], 4096):
                    self.drained += 1
                    while os.read(self._fds[0], 4096):
                        pass

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or not self.arm_bytes or threading.get_ident() == self.ignore_thread:
            return
        try:
            now = self._clock()
            if now - self.read_at < self.gap_s:
                return
            self.read_at = now
            self.checks += 1
            armed = self.arm_bytes
            if armed and current_rss_bytes() >= armed:
                self.arm_bytes = 0  # one wake-up per arming: the guard arms it again
                self.fired += 1
                self.wake()
        except Exception:  # a collector callback must never raise
            return
