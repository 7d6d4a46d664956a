"""Is this pid still the process we recorded? (before we signal anything)

A pid alone is not an identity: after a reboot or a long uptime the number
in a stale pid file or ``swarm.json`` may belong to another user's program
or to another project's Redis. We record a process's start time (clock
ticks since boot, field 22 of ``/proc/<pid>/stat``) next to its pid and
signal it only if both still match; the embedded Redis is also matched on
its command line, which names our socket. Without ``/proc`` (not Linux)
the start time cannot be read and the pid is trusted as before.
"""

from __future__ import annotations

import os

__all__ = ["cmdline", "cpu_seconds", "pid_alive", "same_process", "start_ticks"]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(stat: bytes) -> float:
    """User + system CPU seconds in the text of a ``/proc/<pid>/stat`` (or a task's
    ``stat``) file: fields 14 and 15, after the parenthesised name (which may hold
    spaces). Raises IndexError or ValueError if ``stat`` is not one."""
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> bytes | None:
    """The raw command line of ``pid`` (NUL-separated), or ``None`` if unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def same_process(pid: int, start: int | None, *, needle: bytes | None = None) -> bool:
    """True if ``pid`` is alive and is the process recorded with start time ``start``.

    ``needle``, if given, must also appear in its command line (e.g. our
    socket path). A recorded ``start`` that no longer matches means the pid
    was reused: False. Without ``/proc`` only liveness is checked.
    """
    if not pid_alive(pid):
        return False
    now = start_ticks(pid)
    if start is not None and now is not None and now != start:
        return False
    if needle is not None:
        line = cmdline(pid)
        if line is not None and needle not in line:
            return False
    return True
