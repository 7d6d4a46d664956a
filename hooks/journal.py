"""The hooks' journal: events kept on local disk while Redis is away, replayed once it is back.

When a hook cannot reach Redis it appends its event to
``<state>/hooks.journal`` and exits 0: one JSON object per line, written
with one ``write`` on a file opened ``O_APPEND | O_NOFOLLOW`` (mode 0600)
and ``fsync``'d before the hook returns, so an event a hook reported
stored is on disk. The journal is bounded (``HIVEMIND_JOURNAL_MAX_BYTES``,
default 8 MiB); a full journal refuses the event with a message that says
so. The next hook that reaches Redis, and the supervisor when it starts
(and after it restarted Redis), replay the journal through the same
atomic script as a live write, with each event's own dedup key, so an
event is stored once however often it is replayed; then truncate it.

Concurrency: writers hold a shared ``flock`` on ``hooks.journal.lock``
while appending; a replayer takes it exclusively (without waiting: if it
is busy, the next hook replays), so no append lands between the read and
the truncation. A line torn by a writer killed mid-write is skipped and
reported, and never swallows the next event (a writer that finds the file
not ending in a newline starts its line with one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import StateFolderError
from hivemind.swarm.keys import Keys, validate_namespace
from hivemind.swarm.paths import ensure_private_dir
from hivemind.swarm.redis.resp import Connection

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JOURNAL_FILE",
    "JournalError",
    "JournalFull",
    "ReplayResult",
    "append",
    "journal_path",
    "max_bytes",
    "pending",
    "replay",
    "replay_into",
]

JOURNAL_FILE = "hooks.journal"
LOCK_FILE = "hooks.journal.lock"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
VERSION = 1
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class JournalError(Exception):
    """The journal cannot be used (not a regular file of ours, unwritable)."""


class JournalFull(JournalError):
    """The journal reached its bound; the event was not stored."""


def journal_path(state_dir: Path) -> Path:
    """Where the journal of ``state_dir`` lives."""
    return state_dir / JOURNAL_FILE


def max_bytes() -> int:
    """The journal's bound: ``HIVEMIND_JOURNAL_MAX_BYTES`` (at least 4 KiB), default 8 MiB."""
    raw = env_str("journal_max_bytes") or ""
    try:
        return max(4096, int(raw)) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


@contextlib.contextmanager
def _locked(state_dir: Path, mode: int) -> Iterator[bool]:
    """Hold the journal lock in ``mode``; yield False if ``LOCK_NB`` was asked and it is busy."""
    fd = os.open(
        state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    """Open the journal for append and read; refuse anything but our own regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as exc:
        raise JournalError(f"cannot open the hook journal {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise JournalError(f"the hook journal {path} is not a regular file owned by us")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def append(state_dir: Path, entry: dict[str, Any]) -> int:
    """Append ``entry`` durably (fsync'd); return the journal's size afterwards.

    Raises :class:`JournalFull` when it would pass :func:`max_bytes`, and
    :class:`JournalError` when the journal cannot be written.
    """
    line = json.dumps({"v": VERSION, **entry}, separators=(",", ":"), default=str).encode()
    path = journal_path(state_dir)
    limit = max_bytes()
    try:
        ensure_private_dir(state_dir)
    except StateFolderError as exc:
        raise JournalError(str(exc)) from None
    with _locked(state_dir, fcntl.LOCK_SH):
        fd = _open(path)
        try:
            size = os.fstat(fd).st_size
            # A writer killed mid-line leaves no newline: start ours on a fresh line.
            lead = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
            data = lead + line + b"\n"
            if size + len(data) > limit:
                raise JournalFull(
                    f"the hook journal {path} is full ({size // 1024} KiB of "
                    f"{limit // 1024} KiB) while Redis is unreachable; this event was NOT "
                    "stored (start the swarm or Redis to replay the journal, or raise "
                    "HIVEMIND_JOURNAL_MAX_BYTES)"
                )
            written = os.write(fd, data)
            if written != len(data):
                raise JournalError(f"short write to the hook journal {path}")
            os.fsync(fd)
            return size + written
        except OSError as exc:
            raise JournalError(f"cannot write the hook journal {path}: {exc}") from None
        finally:
            os.close(fd)


def pending(state_dir: Path) -> int:
    """Bytes waiting in the journal (0 when there is none); one ``stat``."""
    try:
        return journal_path(state_dir).lstat().st_size
    except OSError:
        return 0


@dataclass(slots=True)
class ReplayResult:
    """What one replay did."""

    replayed: int = 0
    duplicates: int = 0
    torn: int = 0
    invalid: int = 0
    busy: bool = False
    error: str = ""
    sessions: set[str] = field(default_factory=set)

    def summary(self) -> str:
        """One line for ``hooks.log`` and the supervisor's log."""
        if self.busy:
            return "journal busy (another process is replaying it)"
        parts = [f"replayed {self.replayed} journaled event(s)"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already stored")
        if self.torn:
            parts.append(f"{self.torn} torn line(s) skipped (a hook killed mid-write)")
        if self.invalid:
            parts.append(f"{self.invalid} unreadable line(s) skipped")
        if self.error:
            parts.append(f"stopped: {self.error}; the rest stays journaled")
        return ", ".join(parts)


def _apply(conn: Connection, entry: dict[str, Any]) -> tuple[bool, str]:
    """Write one journaled event; return ``(added, session id)``."""
    from hivemind.coordinator.sessions.store import (
        new_session_id,
        record,
        resolve_current,
        valid_session_id,
    )

    keys = Keys(validate_namespace(str(entry["ns"])))
    sid = str(entry.get("session_id") or "")
    if not sid:
        sid = resolve_current(conn, keys, new_session_id(float(entry["ts"])))
    if not valid_session_id(sid):
        raise ValueError(f"invalid session id {sid!r}")
    memory = entry.get("memory")
    added, _ = record(
        conn,
        keys,
        sid,
        str(entry["kind"]),
        dict(entry["payload"]),
        dedup_key=str(entry.get("dedup") or ""),
        maxlen=int(entry.get("maxlen") or 100_000),
        meta=dict(entry.get("meta") or {}),
        counters=dict(entry.get("counters") or {}),
        memory=(str(memory[0]), str(memory[1]), str(memory[2])) if memory else None,
        ts=float(entry["ts"]),
    )
    if entry.get("set_current"):
        conn.call("SET", keys.hooks_current, sid)
    if entry.get("clear_current"):
        from hivemind.hooks.context import CLEAR_CURRENT_LUA

        conn.call("EVAL", CLEAR_CURRENT_LUA, 1, keys.hooks_current, sid)
    return added, sid


def replay(conn: Connection, state_dir: Path, *, wait: bool = False) -> ReplayResult:
    """Replay the journal into ``conn``'s Redis, then truncate it.

    Idempotent: each event carries its dedup key, so replaying the same
    events again stores nothing new. When Redis fails mid-way the journal
    is kept whole (what was replayed is recognised next time). ``wait``
    blocks for the lock instead of leaving the replay to the next hook.
    """
    result = ReplayResult()
    if pending(state_dir) == 0:
        return result
    from hivemind.swarm.redis.resp import RespError

    mode = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
    with _locked(state_dir, mode) as got:
        if not got:
            result.busy = True
            return result
        fd = _open(journal_path(state_dir))
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            lines = data.split(b"\n")
            last = len(lines) - 1  # text after the final newline: a torn write, if not empty
            for i, raw in enumerate(lines):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                    if not isinstance(entry, dict) or entry.get("v") != VERSION:
                        raise ValueError("not a journal entry")
                    added, sid = _apply(conn, entry)
                except RespError as exc:
                    if _is_unreachable(exc):
                        result.error = f"Redis unreachable: {exc}"
                        return result
                    result.invalid += 1
                    continue
                except (ValueError, KeyError, TypeError):
                    if i == last or _looks_torn(raw):
                        result.torn += 1
                    else:
                        result.invalid += 1
                    continue
                result.sessions.add(sid)
                if added:
                    result.replayed += 1
                else:
                    result.duplicates += 1
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    return result


def _looks_torn(raw: bytes) -> bool:
    """A line that starts like an entry but does not parse: cut short by a killed writer."""
    return raw.lstrip().startswith(b'{"v":')


def _is_unreachable(exc: BaseException) -> bool:
    from hivemind.swarm.redis.resp import unreachable

    return unreachable(exc)


def replay_into(state_dir: Path, url: str) -> ReplayResult:
    """Open a connection to ``url`` and :func:`replay` the journal of ``state_dir`` into it."""
    if pending(state_dir) == 0:
        return ReplayResult()
    from hivemind.swarm.redis.resp import open_connection

    conn = open_connection(url)
    try:
        return replay(conn, state_dir, wait=True)
    finally:
        conn.close()
