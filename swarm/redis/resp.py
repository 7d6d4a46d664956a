"""A minimal Redis client: RESP2 over a socket, parsed by ``hiredis``.

Used where redis-py costs too much: the hooks (a whole process that a
coding agent starts on every edit, where ``import redis`` alone, ~130 ms,
is the whole latency budget) and the runtime inside guarded processes
(which publishes 20 samples a second: a PUBLISH here costs ~75 µs of CPU
from a cold cache against ~250 µs through redis-py, and not importing
redis-py saves its memory in every guarded process). Encoding a command
is a few lines and ``hiredis.Reader`` (already a dependency through
``redis[hiredis]``) parses replies in C, so this module costs ~2 ms to
import. It speaks plain RESP2 to ``unix://`` and ``redis://``
URLs, with ``AUTH`` (password, or ACL user and password) and ``SELECT``.

``rediss://`` (TLS) and anything unusual go to :class:`RedisPyConnection`,
which wraps a redis-py connection but keeps the same raw-reply interface,
so callers never know which one they hold.
"""

from __future__ import annotations

import select
import socket
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from hivemind.swarm.redis.errors import RespConnectionError, RespError

TYPE_CHECKING = False  # typing costs ~0.5 MB in a guarded process; only mypy needs Protocol
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object

__all__ = [
    "Connection",
    "RedisPyConnection",
    "RespConnection",
    "RespConnectionError",
    "RespError",
    "open_connection",
    "unreachable",
]

Arg = str | bytes | int | float


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis is away (not reachable, or still loading its data)."""
    if isinstance(exc, RespConnectionError):
        return True
    return isinstance(exc, RespError) and str(exc).startswith("LOADING")


class Connection(Protocol):
    """What the hooks need from a Redis connection: raw replies, errors raised."""

    def call(self, *args: Arg) -> Any: ...

    def send(self, *args: Arg) -> None: ...

    def read_reply(self, timeout_s: float) -> Any: ...

    def close(self) -> None: ...


def _encode(args: tuple[Arg, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = repr(arg).encode() if isinstance(arg, float) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """One blocking RESP2 connection. Not thread-safe; one per process is enough."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = hiredis.Reader()

    @classmethod
    def open(cls, url: str, *, timeout_s: float = 2.0) -> RespConnection:
        """Connect to a ``unix://`` or ``redis://`` URL, authenticate and select the db."""
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
        password = unquote(parts.password) if parts.password else query.get("password")
        username = unquote(parts.username) if parts.username else query.get("username")
        db: str | None = query.get("db")
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout_s)
                sock.connect(unquote(parts.path))
            elif parts.scheme == "redis":
                sock = socket.create_connection(
                    (parts.hostname or "localhost", parts.port or 6379), timeout=timeout_s
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                path_db = parts.path.strip("/")
                db = db or (path_db if path_db else None)
            else:
                raise RespError(f"unsupported URL scheme {parts.scheme!r}")
        except OSError as exc:
            raise RespConnectionError(f"cannot connect: {exc.strerror or exc}") from None
        conn = cls(sock)
        try:
            if password is not None:
                if username:
                    conn.call("AUTH", username, password)
                else:
                    conn.call("AUTH", password)
            if db not in (None, "", "0"):
                conn.call("SELECT", str(db))
        except RespError:
            conn.close()
            raise
        return conn

    def _read(self) -> Any:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise RespConnectionError(f"connection lost: {exc.strerror or exc}") from None
            if not chunk:
                raise RespConnectionError("connection closed by server")
            self._reader.feed(chunk)

    def call(self, *args: Arg) -> Any:
        """Send one command, return its reply; raise :class:`RespError` on an error reply."""
        self.send(*args)
        reply = self._read()
        if isinstance(reply, hiredis.ReplyError):
            raise RespError(str(reply))
        return reply

    def send(self, *args: Arg) -> None:
        """Send one command without waiting (e.g. SUBSCRIBE, then :meth:`read_reply`)."""
        try:
            self._sock.sendall(_encode(args))
        except OSError as exc:
            raise RespConnectionError(f"connection lost: {exc.strerror or exc}") from None

    def read_reply(self, timeout_s: float) -> Any:
        """The next reply or pushed message, or ``None`` after ``timeout_s``."""
        reply = self._reader.gets()
        if reply is False:
            ready, _, _ = select.select([self._sock], [], [], timeout_s)
            if not ready:
                return None
            reply = self._read()
        return reply

    @property
    def sock(self) -> socket.socket:
        """The underlying socket (the target runtime reads its command channel from it)."""
        return self._sock

    def close(self) -> None:
        self._sock.close()


class RedisPyConnection:
    """Raw replies through redis-py, for TLS (``rediss://``) and other cases.

    Uses a bare redis-py connection (no response callbacks), so replies have
    the same shapes as :class:`RespConnection`'s.
    """

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        import redis

        pool = redis.ConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._conn = pool.make_connection()
        try:
            self._conn.connect()  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            raise RespConnectionError(f"cannot connect: {exc}") from None

    def call(self, *args: Arg) -> Any:
        import redis

        try:
            self._conn.send_command(*args)  # type: ignore[no-untyped-call]
            return self._conn.read_response()
        except redis.ResponseError as exc:
            raise RespError(str(exc)) from None
        except (redis.RedisError, OSError) as exc:
            raise RespConnectionError(f"connection lost: {exc}") from None

    def send(self, *args: Arg) -> None:
        import redis

        try:
            self._conn.send_command(*args)  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            raise RespConnectionError(f"connection lost: {exc}") from None

    def read_reply(self, timeout_s: float) -> Any:
        import redis

        try:
            if not self._conn.can_read(timeout=timeout_s):
                return None
            return self._conn.read_response()
        except (redis.RedisError, OSError) as exc:
            raise RespConnectionError(f"connection lost: {exc}") from None

    def close(self) -> None:
        self._conn.disconnect()  # type: ignore[no-untyped-call]


def open_connection(url: str, *, timeout_s: float = 2.0, driver: str = "auto") -> Connection:
    """Open the cheapest connection that can reach ``url``.

    ``driver`` is ``auto`` (RESP for ``unix://`` and ``redis://``, redis-py
    otherwise), ``resp`` or ``redis-py`` (forced; tests use it).
    """
    scheme = url.split("://", 1)[0]
    if driver == "redis-py" or (driver == "auto" and scheme not in ("unix", "redis")):
        return RedisPyConnection(url, timeout_s=timeout_s)
    return RespConnection.open(url, timeout_s=timeout_s)
