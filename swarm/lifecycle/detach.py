"""``swarm up --detach`` and ``swarm down``: a supervisor in the background, stopped by pid.

:func:`start_detached` spawns ``python -m hivemind.swarm.lifecycle.keeper`` (which
runs the supervisor and starts it again if it dies) in a new session with
the settings passed as ``HIVEMIND_*`` variables, and returns once the
supervisor records itself ready (or raises with its last log line).
:func:`stop_swarm` signals the keeper and returns only once every process
the swarm recorded (keeper, supervisor, ``redis-server``, Ray head and
actors) has exited, checked by pid. When ``swarm.json`` is gone but a
process still holds the state folder's lock (a stop that hung after it
removed the record), that holder (named in ``swarm.lock``) is stopped, and
killed with everything under it if it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hivemind.swarm.errors import HivemindError, NotRunningError, SwarmStartError
from hivemind.swarm.lifecycle.ray_head import stop_orphans
from hivemind.swarm.paths import open_private
from hivemind.swarm.procs import cmdline, same_process
from hivemind.swarm.redis.server import EmbeddedRedis, pid_alive
from hivemind.swarm.settings import Settings
from hivemind.swarm.state import (
    SupervisorLock,
    SwarmInfo,
    lock_holder,
    read_info,
    remove_info,
    running_swarm,
)

__all__ = ["LOG_FILE", "settings_env", "start_detached", "stop_swarm"]

LOG_FILE = "swarm.log"


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``HIVEMIND_*`` variables that recreate ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name == "secret":
            continue
        env[f"HIVEMIND_{name.upper()}"] = str(value)
    if settings.secret is not None:
        env["HIVEMIND_SECRET"] = settings.secret.get_secret_value()
    return env


def start_detached(settings: Settings, timeout_s: float = 180.0) -> SwarmInfo:
    """Start a background supervisor and wait until its swarm is ready."""
    probe = SupervisorLock(settings.state_dir)
    probe.acquire()  # raises AlreadyRunningError; released at once, the child takes it
    probe.release()
    log_path = settings.state_dir / LOG_FILE
    env = {**os.environ, **settings_env(settings)}
    fd = open_private(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "hivemind.swarm.lifecycle.keeper"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            raise SwarmStartError(f"swarm did not start: {_last_line(log_path)}")
        info = read_info(settings.state_dir)
        if info is not None and info.keeper_pid == child.pid and info.state == "ready":
            return info
        time.sleep(0.05)
    child.terminate()
    raise SwarmStartError(f"swarm was not ready within {timeout_s:.0f}s; see {log_path}")


def _last_line(path: Path) -> str:
    try:
        fd = open_private(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            fh.seek(max(0, os.fstat(fd).st_size - 65536))
            text = fh.read().decode("utf-8", "replace")
    except (OSError, HivemindError):
        return "no log"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("hivemind: "):
            return line.removeprefix("hivemind: ")
    return lines[-1] if lines else "no log"


def stop_swarm(state_dir: Path, timeout_s: float = 60.0, *, identify_s: float = 10.0) -> SwarmInfo:
    """Stop the swarm recorded in ``state_dir``; return what was stopped.

    Raises :class:`NotRunningError` when none is up (after clearing what a
    crashed one left behind: a stale ``swarm.json`` or an orphan embedded
    ``redis-server``). A pid is signalled only once ``swarm.json`` names the
    live process that wrote it (start time matches), waiting up to
    ``identify_s`` for a supervisor that is still starting.
    """
    info = running_swarm(state_dir)
    if info is None:
        holder = _unrecorded_holder(state_dir)
        if holder is not None:
            return _stop_holder(state_dir, holder, timeout_s)
        EmbeddedRedis(state_dir).stop()  # orphans from a killed supervisor
        stop_orphans(state_dir)
        remove_info(state_dir)
        raise NotRunningError(f"no swarm is running on {state_dir}")
    keeper = info.keeper_pid if info.keeper_pid and _is_keeper(info.keeper_pid) else None
    if keeper is None:
        info = _identified(state_dir, info, identify_s)
    with contextlib.suppress(ProcessLookupError):
        # The keeper passes SIGTERM on and, unlike the supervisor, is there even
        # while it is starting a new supervisor (swarm.json then names a dead one).
        os.kill(keeper or info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = _recorded_pids(state_dir, info)
        if not SupervisorLock.held(state_dir) and not any(pid_alive(p) for p in pids):
            return info
        time.sleep(0.05)
    if same_process(info.pid, info.pid_start):
        os.kill(info.pid, signal.SIGKILL)
    for pid in _recorded_pids(state_dir, info):  # did not stop in time: end the rest by pid
        if pid not in (info.pid, info.redis_pid) and same_process(pid, None, needle=b"ray"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    if info.keeper_pid and _is_keeper(info.keeper_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.keeper_pid, signal.SIGKILL)
    EmbeddedRedis(state_dir).stop()
    stop_orphans(state_dir)
    remove_info(state_dir)
    return info


KEEPER = b"hivemind.swarm.lifecycle.keeper"


# What a lock holder's command line shows: a keeper, a supervisor, a foreground `swarm up`.
HOLDERS = (KEEPER, b"hivemind.swarm.lifecycle.supervisor", b"\x00swarm\x00up")


def _unrecorded_holder(state_dir: Path) -> int | None:
    """The keeper or supervisor that holds the lock though no ``swarm.json`` names it.

    Only a process that is still the one that wrote its pid into the lock
    (start time) and whose command line is a swarm's (:data:`HOLDERS`);
    never this process (a test, or a tool, may hold the lock itself).
    """
    if read_info(state_dir) is not None:
        return None
    found = lock_holder(state_dir)
    if found is None or found[0] == os.getpid() or not same_process(*found):
        return None
    line = cmdline(found[0]) or b""
    return found[0] if any(needle in line for needle in HOLDERS) else None


def _stop_holder(state_dir: Path, pid: int, timeout_s: float) -> SwarmInfo:
    """SIGTERM the lock's holder (a keeper or a supervisor); past ``timeout_s``,
    SIGKILL it and every process under it (a keeper is the subreaper of them all)."""
    import psutil

    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        tree = psutil.Process(pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not SupervisorLock.held(state_dir) and not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(psutil.Error):
            holder = psutil.Process(pid)
            tree = [holder, *tree, *holder.children(recursive=True)]
        for proc in tree:  # psutil checks each is still the process it listed
            with contextlib.suppress(psutil.Error):
                proc.kill()
    EmbeddedRedis(state_dir).stop()
    stop_orphans(state_dir)
    remove_info(state_dir)
    return SwarmInfo(pid=pid, namespace="", redis_url="", embedded=True)


def _is_keeper(pid: int) -> bool:
    """True if ``pid`` is a live keeper process (its command line says so)."""
    return same_process(pid, None, needle=KEEPER)


def _recorded_pids(state_dir: Path, first: SwarmInfo) -> list[int]:
    """Every pid the swarm recorded: at ``down`` and since (a restart records new ones)."""
    now = read_info(state_dir)
    pids = first.pids() + (now.pids() if now is not None else [])
    return list(dict.fromkeys(pids))


def _identified(state_dir: Path, info: SwarmInfo, wait_s: float = 10.0) -> SwarmInfo:
    """The recorded supervisor, once ``swarm.json`` names the live process that wrote it.

    A ``swarm.json`` left by an earlier supervisor, read while a new one is
    starting (it holds the lock but has not written its own yet), names a
    pid that may now be anyone's: its start time does not match, so we wait
    for the new record instead of signalling it. Raises
    :class:`HivemindError` if no record checks out within ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        if same_process(info.pid, info.pid_start, needle=None if info.pid_start else b"hivemind"):
            return info
        if time.monotonic() >= deadline:
            raise HivemindError(
                f"{state_dir / 'swarm.json'} names pid {info.pid}, which is not the running "
                "supervisor (a stale record, or a swarm still starting); nothing was signalled"
            )
        time.sleep(0.05)
        fresh = running_swarm(state_dir)
        if fresh is None:
            raise NotRunningError(f"no swarm is running on {state_dir}")
        info = fresh
