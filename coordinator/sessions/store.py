"""The session record's layout in Redis and the atomic scripts that write it.

Shared by :class:`hivemind.coordinator.sessions.recorder.SessionStore` (redis-py,
pydantic models) and the hooks (raw RESP, plain dataclasses), so both write
byte-identical records. This module imports neither redis nor pydantic: the
hooks path must stay under its latency budget.

Layout for session ``S`` in namespace ``ns`` (key names from :class:`Keys`):

- ``hm:{ns}:session:S`` hash: ``id``, ``created_ts``, ``first_ts``,
  ``last_ts``, ``level``, ``meta.<name>`` (who/what started it),
  ``count.<name>`` (``events``, one per event kind, ``bytes_freed``, ...),
  ``setting.<name>`` (settings to restore).
- ``hm:{ns}:session:S:events`` stream, capped with ``MAXLEN ~``; entries
  have ``kind``, ``ts`` and ``data`` (JSON object).
- ``hm:{ns}:session:S:dedup`` sorted set of dedup keys by time, trimmed to
  the same cap, so a retried write is recognised for as long as its event
  can still be in the stream.
- ``hm:{ns}:session:S:learned`` hash: action key -> JSON
  ``{n, mean_bytes_freed, mean_ms, last_ts}`` (running means).
- ``hm:{ns}:sessions`` sorted set: session id scored by last activity.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import HivemindError
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.resp import Connection
from hivemind.swarm.safe_text import printable

__all__ = [
    "APPEND_LUA",
    "COUNT",
    "CURRENT_LUA",
    "DEFAULT_STREAM_MAXLEN",
    "ENSURE_LUA",
    "LEARNED_LUA",
    "META",
    "SESSION_ID_PATTERN",
    "SETTING",
    "LearnedRow",
    "RawEvent",
    "SessionView",
    "append_args",
    "decode_events",
    "decode_learned",
    "decode_session_hash",
    "new_session_id",
    "open_export",
    "pairs",
    "printable",
    "read_view",
    "record",
    "resolve_current",
    "stream_maxlen",
    "valid_session_id",
]

DEFAULT_STREAM_MAXLEN = 100_000
# No ':' (a session "a:events" would be session "a"'s event stream), no '*?[' (globs).
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")

META = "meta."
COUNT = "count."
SETTING = "setting."


def _script(name: str) -> str:
    """The Lua source of ``name.lua`` beside this module (scripts live as files, like code)."""
    return (Path(__file__).with_name(name + ".lua")).read_text(encoding="utf-8")


def stream_maxlen() -> int:
    """The stream cap: ``HIVEMIND_STREAM_MAXLEN`` (at least 100), default 100,000."""
    raw = env_str("stream_maxlen") or ""
    try:
        return max(100, int(raw)) if raw else DEFAULT_STREAM_MAXLEN
    except ValueError:
        return DEFAULT_STREAM_MAXLEN


def new_session_id(now: float | None = None) -> str:
    """Return a fresh readable id such as ``hm-20261125-ab12cd``."""
    stamp = time.strftime("%Y%m%d", time.gmtime(now if now is not None else time.time()))
    return f"hm-{stamp}-{os.urandom(3).hex()}"


def valid_session_id(session_id: str) -> bool:
    """True for 1-128 characters of letters, digits and ``_ . @ -`` (no ``:``)."""
    return bool(SESSION_ID_PATTERN.match(session_id))


def open_export(path: Path | str) -> IO[str]:
    """Open ``path`` to write an export (mode 0600 if new), never through a symlink.

    ``--out``/``--export`` name a file the user chose; a symlink there (say
    one planted in a shared folder, pointing at ``~/.bashrc``) is refused
    with :class:`HivemindError` instead of being followed, and so is
    anything that is not a regular file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise HivemindError(f"{path} is a symlink; refusing to write through it") from None
        raise HivemindError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HivemindError(f"{path} is not a regular file; refusing to write to it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


ENSURE_LUA = _script("ensure")

APPEND_LUA = _script("append")

LEARNED_LUA = _script("learned")

CURRENT_LUA = _script("current")


def _num(value: int | float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def append_args(
    keys: Keys,
    session_id: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    dedup_key: str | None = None,
    maxlen: int = DEFAULT_STREAM_MAXLEN,
    meta: Mapping[str, str] | None = None,
    counters: Mapping[str, int | float] | None = None,
    memory: tuple[str, str, str] | None = None,
    ts: float | None = None,
) -> tuple[list[str], list[str]]:
    """Return ``(KEYS, ARGV)`` for :data:`APPEND_LUA`.

    ``memory`` is ``(memory namespace, key, JSON value)``, written only when
    the event itself is new.
    """
    mem_key = keys.memory(memory[0]) if memory else keys.memory("default")
    script_keys = [
        keys.session(session_id),
        keys.session_events(session_id),
        keys.session_dedup(session_id),
        keys.sessions,
        mem_key,
    ]
    argv = [
        session_id,
        kind,
        repr(ts if ts is not None else time.time()),
        json.dumps(dict(payload), separators=(",", ":"), default=str),
        dedup_key or "",
        str(maxlen),
        json.dumps(dict(meta or {}), separators=(",", ":")),
        memory[1] if memory else "",
        memory[2] if memory else "",
    ]
    for name, amount in (counters or {}).items():
        argv += [name, _num(amount)]
    return script_keys, argv


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(raw: str) -> int | float:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return 0


@dataclass(slots=True)
class LearnedRow:
    """One action's learned effect: count, mean bytes freed, mean ms, last update."""

    n: int
    mean_bytes_freed: float
    mean_ms: float
    last_ts: float


@dataclass(slots=True)
class RawEvent:
    """One stream entry: Redis id, kind, timestamp and JSON payload."""

    id: str
    kind: str
    ts: float
    data: dict[str, Any]


@dataclass(slots=True)
class SessionView:
    """A session read straight from Redis, without pydantic."""

    session_id: str
    created_ts: float = 0.0
    first_ts: float = 0.0
    last_ts: float = 0.0
    level: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int | float] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    learned: dict[str, LearnedRow] = field(default_factory=dict)
    stream_len: int = 0
    recent: list[RawEvent] = field(default_factory=list)


def decode_session_hash(session_id: str, raw: Mapping[Any, Any]) -> SessionView:
    """Turn an ``HGETALL`` reply (as a mapping) into a :class:`SessionView`."""
    view = SessionView(session_id=session_id)
    for k, v in raw.items():
        name, value = _s(k), _s(v)
        if name.startswith(META):
            view.meta[name[len(META) :]] = value
        elif name.startswith(COUNT):
            view.counters[name[len(COUNT) :]] = _number(value)
        elif name.startswith(SETTING):
            view.settings[name[len(SETTING) :]] = value
        elif name in ("created_ts", "first_ts", "last_ts"):
            setattr(view, name, float(_number(value)))
        elif name == "level":
            view.level = value
    return view


def pairs(reply: Any) -> dict[str, str]:
    """Turn a flat ``[k1, v1, k2, v2, ...]`` RESP2 reply (or a dict) into a dict."""
    if isinstance(reply, dict):
        return {_s(k): _s(v) for k, v in reply.items()}
    it = iter(reply or [])
    return {_s(k): _s(v) for k, v in zip(it, it, strict=False)}


def decode_learned(raw: Mapping[str, str]) -> dict[str, LearnedRow]:
    """Decode the learned hash, skipping any malformed row."""
    out: dict[str, LearnedRow] = {}
    for key, value in raw.items():
        try:
            row = json.loads(value)
            out[key] = LearnedRow(
                n=int(row["n"]),
                mean_bytes_freed=float(row["mean_bytes_freed"]),
                mean_ms=float(row["mean_ms"]),
                last_ts=float(row.get("last_ts", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def decode_events(reply: Any) -> list[RawEvent]:
    """Decode an ``XRANGE``/``XREVRANGE`` reply in either RESP shape."""
    out: list[RawEvent] = []
    for entry in reply or []:
        entry_id, fields = entry[0], entry[1]
        f = pairs(fields)
        try:
            data = json.loads(f.get("data", "{}"))
        except ValueError:
            data = {"raw": f.get("data", "")}
        out.append(
            RawEvent(
                id=_s(entry_id),
                kind=f.get("kind", ""),
                ts=float(_number(f.get("ts", "0"))),
                data=data if isinstance(data, dict) else {"value": data},
            )
        )
    return out


def record(
    conn: Connection,
    keys: Keys,
    session_id: str,
    kind: str,
    payload: Mapping[str, Any],
    **kwargs: Any,
) -> tuple[bool, bool]:
    """Append one event over a raw connection; return ``(added, created)``.

    One ``EVAL`` round trip (Redis caches the compiled script by its SHA1).
    ``kwargs`` are those of :func:`append_args`.
    """
    script_keys, argv = append_args(keys, session_id, kind, payload, **kwargs)
    reply = conn.call("EVAL", APPEND_LUA, len(script_keys), *script_keys, *argv)
    return bool(reply[0]), bool(reply[1])


def resolve_current(conn: Connection, keys: Keys, candidate: str) -> str:
    """Return the hooks' current session, making ``candidate`` current if none is."""
    return _s(conn.call("EVAL", CURRENT_LUA, 1, keys.hooks_current, candidate))


def read_view(
    conn: Connection, keys: Keys, session_id: str, *, recent: int = 5
) -> SessionView | None:
    """Read a session's hash, learned table, stream length and last events; None if unknown.

    Cost is independent of the number of events (XLEN and XREVRANGE COUNT).
    """
    raw = pairs(conn.call("HGETALL", keys.session(session_id)))
    if not raw:
        return None
    view = decode_session_hash(session_id, raw)
    view.learned = decode_learned(pairs(conn.call("HGETALL", keys.session_learned(session_id))))
    view.stream_len = int(conn.call("XLEN", keys.session_events(session_id)))
    if recent > 0:
        view.recent = decode_events(
            conn.call("XREVRANGE", keys.session_events(session_id), "+", "-", "COUNT", recent)
        )
    return view
