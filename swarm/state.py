"""The state folder's record of a running swarm: ``swarm.json`` and ``swarm.lock``.

The supervisor (the ``swarm up`` process) holds an exclusive ``flock`` on
``swarm.lock`` for its whole life, so a crash releases it and a stale
``swarm.json`` is recognised without guessing from pids alone.
``swarm.json`` (mode 0600: it may hold an external Redis URL with its
password) tells ``status``, ``down`` and the hooks where the swarm is. Both
are read only from a state folder hivemind made, never through a symlink,
and only if they are ours (:mod:`hivemind.swarm.paths`); ``swarm.json``
records the supervisor's start time next to its pid, so ``swarm down``
never signals a pid that was reused. The lock file itself names its
holder (pid and start time), so ``swarm down`` can find a swarm whose
``swarm.json`` is gone (removed by a stop that then hung).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from hivemind.swarm.errors import AlreadyRunningError, StateFolderError
from hivemind.swarm.paths import (
    ensure_state_dir,
    open_private,
    read_private_text,
    verify_state_dir,
    write_private_file,
)
from hivemind.swarm.procs import start_ticks
from hivemind.swarm.record import asdict, field, record
from hivemind.swarm.vocab import DEFAULT_TARGET_MB

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Literal

__all__ = [
    "SupervisorLock",
    "SwarmInfo",
    "lock_holder",
    "read_info",
    "remove_info",
    "running_swarm",
    "write_info",
]

INFO_FILE = "swarm.json"
LOCK_FILE = "swarm.lock"


@record
class SwarmInfo:
    """Where a swarm is and how to reach it."""

    pid: int
    namespace: str
    redis_url: str
    embedded: bool
    state: Literal["starting", "ready", "stopping", "restarting"] = "starting"
    ray_address: str | None = None
    session_id: str = ""
    target_mb: float = DEFAULT_TARGET_MB
    started_at: float = field(default_factory=time.time)
    redis_pid: int | None = None
    pid_start: int | None = None  # the supervisor's start time (clock ticks), see procs
    keeper_pid: int | None = None  # the detached swarm's keeper (restarts the supervisor)
    ray_pids: list[int] = field(default_factory=list)  # Ray head and actor processes

    def pids(self) -> list[int]:
        """Every process this swarm started that ``swarm down`` waits for."""
        found = [self.keeper_pid, self.pid, self.redis_pid, *self.ray_pids]
        return [p for p in dict.fromkeys(found) if p]


def write_info(state_dir: Path, info: SwarmInfo) -> None:
    """Atomically write ``swarm.json`` (mode 0600)."""
    write_private_file(state_dir / INFO_FILE, json.dumps(asdict(info), indent=2))


def read_info(state_dir: Path, *, strict: bool = False) -> SwarmInfo | None:
    """Return the recorded swarm, or ``None`` if there is none or it is unreadable.

    A state folder or ``swarm.json`` hivemind did not make (planted by
    someone) is never read: ``None`` (the guarded-process runtime simply
    finds no swarm), or with ``strict`` a
    :class:`~hivemind.swarm.errors.StateFolderError` saying why (the CLI).
    """
    try:
        if not verify_state_dir(state_dir):
            return None
        raw = json.loads(read_private_text(state_dir / INFO_FILE))
        return SwarmInfo(**raw)
    except StateFolderError:
        if strict:
            raise
        return None
    except (OSError, ValueError, TypeError):
        return None


def remove_info(state_dir: Path) -> None:
    """Forget the recorded swarm."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / INFO_FILE).unlink()


class SupervisorLock:
    """The exclusive lock a ``swarm up`` process holds on its state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunningError` naming the holder."""
        ensure_state_dir(self.state_dir)
        fd = open_private(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_info(self.state_dir)
            who = f" (pid {info.pid}, namespace {info.namespace})" if info else ""
            raise AlreadyRunningError(
                f"a swarm is already running on {self.state_dir}{who}; "
                "stop it with `hivemind swarm down`"
            ) from None
        with contextlib.suppress(OSError):  # who holds it, for `swarm down` (see holder)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {start_ticks(os.getpid()) or ''}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def held(state_dir: Path) -> bool:
        """True when some live process holds the lock (a swarm is up)."""
        if not verify_state_dir(state_dir):
            return False
        try:
            fd = open_private(state_dir / LOCK_FILE, os.O_RDWR)
        except OSError:  # missing or unreadable; a planted one raises StateFolderError
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def lock_holder(state_dir: Path) -> tuple[int, int | None] | None:
    """``(pid, start ticks)`` of the process holding ``swarm.lock``, as it wrote them.

    ``None`` when the lock is free or names nobody. The caller checks that
    the pid is still that process (:func:`hivemind.swarm.procs.same_process`).
    """
    if not SupervisorLock.held(state_dir):
        return None
    try:
        words = read_private_text(state_dir / LOCK_FILE).split()
        return int(words[0]), int(words[1]) if len(words) > 1 else None
    except (OSError, ValueError, IndexError, StateFolderError):
        return None


def running_swarm(state_dir: Path) -> SwarmInfo | None:
    """The swarm recorded in ``state_dir`` if its supervisor is alive (holds the lock).

    ``None`` when nothing is recorded, or when ``swarm.json`` was left behind
    by a supervisor that died.
    """
    info = read_info(state_dir, strict=True)  # a planted folder is refused, loudly
    if info is None or not SupervisorLock.held(state_dir):
        return None
    return info
