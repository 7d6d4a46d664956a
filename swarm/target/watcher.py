"""Reads the app's RSS from a small helper process, so that the guard's thread need not.

Near its target the guard must notice RSS reaching its collect band within
milliseconds (issue 11's aim: p99 under 10 ms in the target). When the
app's own collections read RSS (:mod:`~hivemind.swarm.target.trigger`),
they tell it. When they do not (an app that allocates strings and bytes,
or disabled its collector), somebody has to look at 200 Hz-1 kHz, and a
look by the guard's own thread costs the app a GIL hand-off each time: the
thread wakes, takes the GIL from a busy app thread and gives it back. On a
core shared with another process that hand-off waits for the scheduler:
the fragmentation app (four worker threads) did 17 % more work on the same
core when its guard did not look between samples at all. Far under the
target, with nothing under way (calm), the same holds for the samples
themselves: the guard arms the helper at 70 % of the target with the
sampling period and takes one whole sample a second, rather than waking
ten times a second to read RSS (the CPU-bound corpus app did ~2 % more
work against the watchdog baseline, ad hoc). So a guarded process that
stays calm for a second has this helper beside it from then on.

:class:`RssWatcher` moves the look out of the app: a helper interpreter
(``python -I -S``, standard library only, ~3 MB of its own (USS), none in the
app) reads ``/proc/PID/statm`` at the period the guard asks for while it
is armed, and writes one byte to the guard's wake pipe (the trigger's)
when RSS reached the armed level; the guard's thread wakes only then. The
guard arms it with a line ``LEVEL PERIOD`` on a pipe (``0``: disarmed,
the helper then sleeps until the next line). The helper exits when that
pipe closes (the guard stopped, or the app is gone) or the app's
``/proc`` entry does.

Nothing here raises into the app: a helper that cannot start (no
``sys.executable``, no ``posix_spawn``) leaves :attr:`RssWatcher.failed`
set, and the guard reads RSS itself as before. The helper is the app's
child process: an app that waits for *all* its children to exit
(``os.wait()`` until ``ChildProcessError``) would wait for it too; such an
app sets ``HIVEMIND_WATCHER=0`` and its guard never starts one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from hivemind.agents.memtools import pread_holding_gil
from hivemind.swarm.procs import cpu_seconds

__all__ = ["HELPER", "RssWatcher"]

# The helper's whole program: stdin carries "LEVEL PERIOD" lines, stdout is the wake pipe.
HELPER = r"""
import os, select, sys
os.closerange(3, 4096)
pid = int(sys.argv[1])
page = os.sysconf("SC_PAGE_SIZE")
try:
    statm = os.open("/proc/%d/statm" % pid, os.O_RDONLY)
except OSError:
    sys.exit(0)
level, period, rest = 0, 0.005, b""
while True:
    ready = select.select([0], [], [], period if level else None)[0]
    if ready:
        data = os.read(0, 4096)
        if not data:
            break
        *lines, rest = (rest + data).split(b"\n")
        if lines:
            parts = lines[-1].split()
            level, period = int(parts[0]), max(0.0005, float(parts[1]))
    if level:
        try:
            rss = int(os.pread(statm, 64, 0).split()[1]) * page
        except (OSError, IndexError, ValueError):
            break
        if rss >= level:
            level = 0
            try:
                os.write(1, b"w")
            except BlockingIOError:  # a full pipe: the guard is woken already
                pass
            except OSError:  # the guard closed its end: nobody to wake
                break
"""


class RssWatcher:
    """The helper process that watches this process's RSS for the guard.

    :meth:`start` spawns it with the pipe to wake the guard through;
    :meth:`arm` sets the level and period (writes only what changed);
    :meth:`close` ends it. :attr:`pid` is the helper's (0: none),
    :attr:`failed` says it could not start (the guard then polls itself);
    :meth:`cpu_s` is the CPU it has used (the guard's cost includes it).
    """

    def __init__(self, allowed: bool = True) -> None:
        self.pid = 0
        self.failed = not allowed  # HIVEMIND_WATCHER=0: never started, the guard reads RSS
        self._arm_fd = -1
        self._stat_fd = -1  # the helper's /proc stat, opened at spawn: a reused pid is not it
        self._sent: tuple[int, float] = (0, 0.0)

    @property
    def running(self) -> bool:
        """True while a helper was started and not closed."""
        return self._arm_fd >= 0

    def start(self, wake_fd: int) -> bool:
        """Spawn the helper, waking through ``wake_fd`` (a pipe's write end); True if it
        runs. A failure is kept in :attr:`failed` and not retried."""
        if self.running:
            return True
        if self.failed or wake_fd < 0:
            return False
        r = w = -1
        try:
            r, w = os.pipe()
            os.set_blocking(w, False)
            actions = [
                (os.POSIX_SPAWN_DUP2, r, 0),
                (os.POSIX_SPAWN_DUP2, wake_fd, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ]
            argv = [sys.executable, "-I", "-S", "-c", HELPER, str(os.getpid())]
            self.pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions)
        except Exception:  # no interpreter to run, no posix_spawn, no pipes left
            self.failed = True
            for fd in (r, w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            return False
        os.close(r)
        self._arm_fd = w
        self._sent = (0, 0.0)
        with contextlib.suppress(OSError):
            self._stat_fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        return True

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the helper has used so far; 0.0 if none was
        started, or it is gone. Read without giving the GIL up."""
        if self._stat_fd < 0:
            return 0.0
        try:
            return cpu_seconds(pread_holding_gil(self._stat_fd, 512))
        except (OSError, IndexError, ValueError):  # ESRCH: it exited and was reaped
            return 0.0

    def arm(self, level: int, period_s: float) -> None:
        """Watch for RSS at ``level`` bytes, reading every ``period_s`` (0: disarm)."""
        want = (level, period_s if level else 0.0)
        if self._arm_fd < 0 or want == self._sent:
            return
        try:
            os.write(self._arm_fd, b"%d %.6f\n" % want)
        except BlockingIOError:  # the helper is behind: the next call sends it again
            return
        except OSError:  # the helper is gone: the guard polls itself from now on
            self.forget()
            self.failed = True
            return
        self._sent = want

    def rearm(self) -> None:
        """Send the next :meth:`arm` even if unchanged (the helper disarms itself when it
        fires)."""
        self._sent = (0, 0.0)

    def forget(self) -> None:
        """Close our end without waiting for the helper (a forked child's copy: the
        helper is the parent's)."""
        for fd in (self._arm_fd, self._stat_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._arm_fd = self._stat_fd = -1

    def close(self, timeout_s: float = 0.5) -> None:
        """End the helper (it exits when its pipe closes) and reap it; killed if it
        has not gone within ``timeout_s`` (idempotent)."""
        pid, self.pid = self.pid, 0
        self.forget()
        if pid <= 0:
            return
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(OSError):  # ECHILD: the app reaped it already
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() >= deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.002)
