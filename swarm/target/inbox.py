"""The runtime's command inbox: a pub/sub reader that never buffers an oversized message.

A subscriber connection only receives RESP2 arrays of bulk strings and
integers (``subscribe`` confirmations, ``message`` pushes). :class:`PushReader`
parses exactly those from the socket itself: a bulk string longer than
``max_bulk`` is skipped as it streams in (read and dropped chunk by chunk,
never held) and surfaces as :data:`TOO_LARGE`, so a flood of big messages
costs the guarded process neither memory nor a parse. Anything else on the
wire (an error reply, a malformed header) raises :class:`RespError`, and
the runtime reconnects.
"""

from __future__ import annotations

from hivemind.swarm.redis.errors import RespError

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    import socket

    from hivemind.swarm.target.trigger import RiseTrigger as Waker

__all__ = ["TOO_LARGE", "PushReader"]

TOO_LARGE = b"\x00too-large"
"""Stands in for a bulk string that was longer than ``max_bulk`` (its bytes were dropped)."""

_MAX_HEADER = 32  # "$65536\r\n" and the like; anything longer is not RESP we expect
_MAX_ITEMS = 8


class PushReader:
    """Reads pushed arrays from a subscribed socket, with a cap on each bulk string."""

    def __init__(
        self, sock: socket.socket, max_bulk: int = 64 * 1024, wake: Waker | None = None
    ) -> None:
        import select  # here: a guarded process with no swarm never loads it

        self._select = select.select
        self._sock = sock
        self._wake = wake  # its fileno() readable: stop waiting (and drain it)
        self._max = max_bulk
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized bulk (plus CRLF) still to drop
        self._n: int | None = None  # items in the array being read
        self._items: list[bytes | int] = []

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n", 0, _MAX_HEADER + 2)
        if end < 0:
            if len(self._buf) > _MAX_HEADER:
                raise RespError("protocol error: header too long")
            return None
        return bytes(self._buf[:end])

    def _parse(self) -> list[bytes | int] | None:
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return None
            if self._n is None:
                line = self._line()
                if line is None:
                    return None
                if not line.startswith(b"*"):
                    raise RespError(f"unexpected reply on the command channel: {line[:32]!r}")
                del self._buf[: len(line) + 2]
                self._n = _int(line[1:])
                if not 0 <= self._n <= _MAX_ITEMS:
                    raise RespError("protocol error: array size")
                self._items = []
            while len(self._items) < self._n:
                line = self._line()
                if line is None:
                    return None
                if line.startswith(b":"):
                    del self._buf[: len(line) + 2]
                    self._items.append(_int(line[1:]))
                    continue
                if not line.startswith(b"$"):
                    raise RespError(f"protocol error: {line[:32]!r}")
                size = _int(line[1:])
                if size < 0:
                    raise RespError("protocol error: null bulk")
                if size > self._max:
                    del self._buf[: len(line) + 2]
                    self._skip = size + 2
                    self._items.append(TOO_LARGE)
                    break  # drop it as it streams in, then go on
                start = len(line) + 2
                if len(self._buf) < start + size + 2:
                    return None
                self._items.append(bytes(self._buf[start : start + size]))
                del self._buf[: start + size + 2]
            else:
                items, self._n, self._items = self._items, None, []
                return items

    def read(self, timeout_s: float) -> list[bytes | int] | None:
        """The next pushed array, or ``None`` after ``timeout_s`` without a whole one
        (or sooner, when ``wake`` was woken)."""
        got = self._parse()
        if got is not None:
            return got
        wake = self._wake.fileno() if self._wake is not None else -1
        fds: list[socket.socket | int] = [self._sock] if wake < 0 else [self._sock, wake]
        ready, _, _ = self._select(fds, [], [], timeout_s)
        if self._wake is not None and wake in ready:
            self._wake.drain()
            ready = [self._sock] if self._sock in ready else []
        while ready:
            try:
                chunk = self._sock.recv(65536)
            except BlockingIOError:
                return None
            except OSError as exc:
                raise RespError(f"connection lost: {exc.strerror or exc}") from None
            if not chunk:
                raise RespError("connection closed by server")
            if self._skip >= len(chunk):
                self._skip -= len(chunk)
            else:
                if self._skip:
                    chunk = chunk[self._skip :]
                    self._skip = 0
                self._buf += chunk
            got = self._parse()
            if got is not None:
                return got
            ready, _, _ = self._select([self._sock], [], [], 0)
        return None


def _int(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise RespError(f"protocol error: {raw[:32]!r}") from None
