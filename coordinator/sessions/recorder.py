"""Optimization sessions in Redis: the one API that records, reads and restores them.

A session is a hash (meta, counters, level, settings), a capped event
stream, a dedup set, a learned table and an entry in the sessions sorted
set; :mod:`hivemind.coordinator.sessions.store` documents the layout and holds the Lua
scripts, shared with the hooks so both write identical records. Every
write that belongs together is one script call (atomic on the server).
Reads never scan the stream: counters live in the hash, and ``snapshot``
uses ``XLEN`` and ``XREVRANGE ... COUNT``, so it costs the same on a
session of ten events or of 100,000.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from hivemind.coordinator.sessions.store import (
    APPEND_LUA,
    COUNT,
    ENSURE_LUA,
    LEARNED_LUA,
    SETTING,
    append_args,
    decode_events,
    decode_learned,
    decode_session_hash,
    new_session_id,
    open_export,
    pairs,
    stream_maxlen,
    valid_session_id,
)
from hivemind.swarm.errors import HivemindError, UsageError
from hivemind.swarm.keys import Keys

__all__ = [
    "LearnedEntry",
    "SessionEvent",
    "SessionSnapshot",
    "SessionStore",
    "SessionSummary",
    "UnknownSessionError",
    "request_restore",
]

EXPORT_CHUNK = 1000


class UnknownSessionError(HivemindError):
    """No session with that id in this namespace."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1


class LearnedEntry(_Record):
    """What one action freed in this session: count and running means."""

    n: int = Field(ge=0)
    mean_bytes_freed: float
    mean_ms: float = Field(ge=0)
    last_ts: float = 0.0


class SessionEvent(_Record):
    """One entry of a session's event stream."""

    id: str
    kind: str
    ts: float
    payload: dict[str, Any]


class SessionSummary(_Record):
    """One line of ``session list``."""

    session_id: str
    first_ts: float
    last_ts: float
    level: str
    events: int
    source: str = ""


class SessionSnapshot(_Record):
    """Everything a restore needs and ``session show`` prints, read in O(1) commands."""

    session_id: str
    meta: dict[str, str]
    level: str
    counters: dict[str, int | float]
    learned: dict[str, LearnedEntry]
    settings: dict[str, str]
    first_ts: float
    last_ts: float
    event_count: int = Field(description="events ever recorded (the hash counter)")
    stream_len: int = Field(description="events still in the capped stream")
    recent: list[SessionEvent] = Field(default_factory=list, description="newest first")
    reclaim: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="target -> caches found and its last reclaims"
    )


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _reclaim_reports(raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for target, value in raw.items():
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict):
            out[_text(target)] = data
    return out


def _check_id(session_id: str) -> str:
    if not valid_session_id(session_id):
        raise UsageError(
            f"invalid session id {session_id!r}: use 1-128 letters, digits and _ . @ -"
        )
    return session_id


class SessionStore:
    """Reads and writes sessions for one namespace through a redis-py client.

    ``maxlen`` caps each session's stream (``XADD MAXLEN ~``) and dedup set;
    default ``HIVEMIND_STREAM_MAXLEN`` or 100,000. Thread-safe as far as the
    client is (redis-py clients are).
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, maxlen: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = maxlen or stream_maxlen()
        self._ensure = client.register_script(ENSURE_LUA)
        self._append = client.register_script(APPEND_LUA)
        self._learned = client.register_script(LEARNED_LUA)

    # --- writes ------------------------------------------------------------
    def ensure(self, session_id: str | None, meta: Mapping[str, str]) -> tuple[str, bool]:
        """Create the session (new readable id if ``None``) or resume it.

        Returns ``(session_id, created)``. ``meta`` fields are set only where
        not already present, so resuming never rewrites who started it.
        """
        sid = _check_id(session_id) if session_id else new_session_id()
        created = self._ensure(
            keys=[self.keys.session(sid), self.keys.sessions],
            args=[sid, repr(time.time()), json.dumps({k: str(v) for k, v in meta.items()})],
        )
        return sid, bool(created)

    def append(
        self,
        session_id: str,
        kind: str,
        payload: Mapping[str, Any],
        dedup_key: str | None = None,
        *,
        counters: Mapping[str, int | float] | None = None,
    ) -> bool:
        """Record one event atomically; False if ``dedup_key`` was already seen.

        In one script: XADD to the capped stream, ``count.events`` and
        ``count.<kind>`` +1, each of ``counters`` added (``bytes_freed``,
        ...), ``last_ts`` and the sessions sorted set updated. A session that
        does not exist yet is created. ``payload`` must be JSON-serialisable.
        """
        script_keys, argv = append_args(
            self.keys,
            _check_id(session_id),
            kind,
            payload,
            dedup_key=dedup_key,
            maxlen=self.maxlen,
            counters=counters,
        )
        reply = self._append(keys=script_keys, args=argv)
        return bool(reply[0])

    def incr(self, session_id: str, field: str, amount: int | float = 1) -> float:
        """Add ``amount`` to counter ``field`` (e.g. ``bytes_freed``); return the new value."""
        key = self.keys.session(_check_id(session_id))
        pipe = self.client.pipeline(transaction=True)
        if isinstance(amount, float):
            pipe.hincrbyfloat(key, COUNT + field, amount)
        else:
            pipe.hincrby(key, COUNT + field, amount)
        self._touch(pipe, session_id)
        return float(pipe.execute()[0])

    def set_level(self, session_id: str, level: str) -> None:
        """Record the session's current pressure level (a ``Level`` value)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.session(_check_id(session_id)), "level", str(level))
        self._touch(pipe, session_id)
        pipe.execute()

    def set_settings(self, session_id: str, settings: Mapping[str, str | int | float]) -> None:
        """Store settings a restore should bring back (e.g. ``target_mb``)."""
        if not settings:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            self.keys.session(_check_id(session_id)),
            mapping={SETTING + k: str(v) for k, v in settings.items()},
        )
        self._touch(pipe, session_id)
        pipe.execute()

    def set_reclaim(self, session_id: str, target: str, report: Mapping[str, Any]) -> None:
        """Keep what ``target`` found and its last reclaims (``session show`` prints them)."""
        key = self.keys.session_reclaim(_check_id(session_id))
        self.client.hset(key, target, json.dumps(dict(report), separators=(",", ":")))

    def learned_record(
        self, session_id: str, key: str, bytes_freed: int, duration_ms: float
    ) -> int:
        """Fold one measured effect into ``key``'s running means; return its new count."""
        sid = _check_id(session_id)
        n = self._learned(
            keys=[self.keys.session_learned(sid), self.keys.session(sid), self.keys.sessions],
            args=[key, int(bytes_freed), float(duration_ms), repr(time.time()), sid],
        )
        return int(n)

    def _touch(self, pipe: Any, session_id: str) -> None:
        now = time.time()
        key = self.keys.session(session_id)
        pipe.hsetnx(key, "id", session_id)
        pipe.hsetnx(key, "created_ts", repr(now))
        pipe.hsetnx(key, "first_ts", repr(now))
        pipe.hset(key, "last_ts", repr(now))
        pipe.zadd(self.keys.sessions, {session_id: now})

    # --- reads -------------------------------------------------------------
    def exists(self, session_id: str) -> bool:
        return bool(
            valid_session_id(session_id) and self.client.exists(self.keys.session(session_id))
        )

    def learned_table(self, session_id: str) -> dict[str, LearnedEntry]:
        """The learned table: action key -> :class:`LearnedEntry`."""
        raw = pairs(self.client.hgetall(self.keys.session_learned(_check_id(session_id))))
        return {
            k: LearnedEntry(
                n=r.n, mean_bytes_freed=r.mean_bytes_freed, mean_ms=r.mean_ms, last_ts=r.last_ts
            )
            for k, r in decode_learned(raw).items()
        }

    def snapshot(self, session_id: str, *, recent: int = 20) -> SessionSnapshot:
        """Meta, level, counters, learned table, settings, times and the last events.

        Four commands in one round trip whatever the session's size. Raises
        :class:`UnknownSessionError` for an id not in this namespace.
        """
        sid = _check_id(session_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.session(sid))
        pipe.hgetall(self.keys.session_learned(sid))
        pipe.xlen(self.keys.session_events(sid))
        pipe.xrevrange(self.keys.session_events(sid), count=max(recent, 1))
        pipe.hgetall(self.keys.session_reclaim(sid))
        raw, learned, xlen, events, reclaim = pipe.execute()
        if not raw:
            raise UnknownSessionError(f"unknown session {sid!r} in namespace {self.keys.ns}")
        view = decode_session_hash(sid, raw)
        return SessionSnapshot(
            session_id=sid,
            meta=view.meta,
            level=view.level or "conservative",
            counters=view.counters,
            learned={
                k: LearnedEntry(
                    n=r.n, mean_bytes_freed=r.mean_bytes_freed, mean_ms=r.mean_ms, last_ts=r.last_ts
                )
                for k, r in decode_learned(pairs(learned)).items()
            },
            settings=view.settings,
            first_ts=view.first_ts,
            last_ts=view.last_ts,
            event_count=int(view.counters.get("events", 0)),
            stream_len=int(xlen),
            recent=[
                SessionEvent(id=e.id, kind=e.kind, ts=e.ts, payload=e.data)
                for e in decode_events(events)[:recent]
            ],
            reclaim=_reclaim_reports(reclaim),
        )

    def list_sessions(self, limit: int = 50) -> list[SessionSummary]:
        """Sessions by last activity, newest first."""
        ids = [_text(i) for i in self.client.zrevrange(self.keys.sessions, 0, max(limit, 1) - 1)]
        pipe = self.client.pipeline(transaction=False)
        for sid in ids:
            pipe.hmget(
                self.keys.session(sid),
                ["first_ts", "last_ts", "level", "count.events", "meta.source"],
            )
        out: list[SessionSummary] = []
        for sid, row in zip(ids, pipe.execute(), strict=True):
            first, last, level, events, source = (_text(x) if x is not None else "" for x in row)
            out.append(
                SessionSummary(
                    session_id=sid,
                    first_ts=float(first or 0),
                    last_ts=float(last or 0),
                    level=level or "conservative",
                    events=int(events or 0),
                    source=source,
                )
            )
        return out

    def events(self, session_id: str, count: int = 100, reverse: bool = True) -> list[SessionEvent]:
        """Up to ``count`` events, newest first (``reverse``) or oldest first."""
        key = self.keys.session_events(_check_id(session_id))
        raw = (
            self.client.xrevrange(key, count=count)
            if reverse
            else self.client.xrange(key, count=count)
        )
        return [
            SessionEvent(id=e.id, kind=e.kind, ts=e.ts, payload=e.data) for e in decode_events(raw)
        ]

    def iter_events(self, session_id: str, chunk: int = EXPORT_CHUNK) -> Iterator[SessionEvent]:
        """Every event still in the stream, oldest first, read ``chunk`` at a time."""
        key = self.keys.session_events(_check_id(session_id))
        start = "-"
        while True:
            batch = decode_events(self.client.xrange(key, min=start, max="+", count=chunk))
            for e in batch:
                yield SessionEvent(id=e.id, kind=e.kind, ts=e.ts, payload=e.data)
            if len(batch) < chunk:
                return
            start = "(" + batch[-1].id

    def export(
        self, session_id: str, fmt: Literal["json", "csv"], out: IO[str] | Path | str
    ) -> int:
        """Write the session to ``out`` (a text stream or a path); return events written.

        ``json``: one object ``{"session": snapshot, "events": [...]}``,
        streamed so memory stays flat. ``csv``: ``id,ts,time,kind,payload``
        with the payload as JSON. Raises :class:`UnknownSessionError`.
        """
        if fmt not in ("json", "csv"):
            raise UsageError(f"unknown export format {fmt!r}: use json or csv")
        snap = self.snapshot(session_id, recent=0)
        if isinstance(out, str | Path):
            with open_export(out) as fh:  # never through a symlink
                return self._export(snap, fmt, fh)
        return self._export(snap, fmt, out)

    def _export(self, snap: SessionSnapshot, fmt: str, fh: IO[str]) -> int:
        n = 0
        if fmt == "csv":
            writer = csv.writer(fh)
            writer.writerow(["id", "ts", "time", "kind", "payload"])
            for e in self.iter_events(snap.session_id):
                iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.ts))
                writer.writerow([e.id, repr(e.ts), iso, e.kind, json.dumps(e.payload)])
                n += 1
            return n
        head = snap.model_dump(mode="json", exclude={"recent"})
        fh.write('{"session": ' + json.dumps(head) + ', "events": [')
        for e in self.iter_events(snap.session_id):
            fh.write(("," if n else "") + "\n  " + e.model_dump_json())
            n += 1
        fh.write("\n]}\n")
        return n


def request_restore(
    client: redis.Redis,
    keys: Keys,
    session_id: str,
    *,
    key: bytes | None,
    timeout_s: float = 3.0,
) -> bool:
    """Ask a running coordinator to take ``session_id`` back; wait until it has.

    Publishes ``Control(op="restore")``, sealed with the swarm's ``key`` (the
    coordinator drops anything unsealed), on ``keys.control`` and polls
    ``HGET keys.swarm session_id`` until it equals ``session_id`` or
    ``timeout_s`` passes. Returns False at once when nobody is subscribed.
    Raises :class:`UnknownSessionError` for an unknown id.
    """
    from hivemind.swarm.messages import Control
    from hivemind.swarm.redis.bus import publish

    _check_id(session_id)
    if not client.exists(keys.session(session_id)):
        raise UnknownSessionError(f"unknown session {session_id!r} in namespace {keys.ns}")
    receivers = publish(client, keys.control, Control(op="restore", session_id=session_id), key)
    if not receivers:
        return False
    deadline = time.monotonic() + timeout_s
    while True:
        current = client.hget(keys.swarm, "session_id")
        if current is not None and _text(current) == session_id:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
