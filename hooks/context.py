"""One hook run's context: its arguments, its outcome, and the one path that records.

:class:`Ctx` opens Redis lazily (only a hook that writes or reads reaches it),
resolves the session a hook writes into, and records each event with one atomic
script call. When Redis is unreachable, a write goes to the state folder's journal
(:mod:`hivemind.hooks.journal`) instead and the hook still succeeds; the next hook
that reaches Redis replays the journal first.

Which session a hook writes into, first match wins: ``--session-id``;
``HIVEMIND_SESSION_ID``; the running swarm's session (so a coding agent's
edits land in the optimization session under way); Claude Code's
``session_id``; the hooks' *current* session (set by the first hook that
needed one, by ``session-start`` and ``session-restore``, cleared by
``session-end``); a new id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind.coordinator.sessions.store import (
    new_session_id,
    record,
    resolve_current,
    stream_maxlen,
    valid_session_id,
)
from hivemind.hooks.claude_code import StdinPayload
from hivemind.hooks.target import RedisTarget, redis_target
from hivemind.swarm.env import env_str
from hivemind.swarm.errors import RedisUnavailableError
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.resp import Connection, RespError, open_connection, unreachable

__all__ = [
    "CLEAR_CURRENT_LUA",
    "DEDUP_BUCKET_S",
    "MAX_FIELD_CHARS",
    "Ctx",
    "HookArgs",
    "Outcome",
    "redis_away",
]

DEDUP_BUCKET_S = 5.0
# A hook field (description, file, results...) is cut past this many characters,
# so one hook cannot put megabytes into a session (stdin alone may hold 8 MiB).
MAX_FIELD_CHARS = 16 * 1024
# Compare-and-delete: end the current session only if it is still this one.
CLEAR_CURRENT_LUA = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def redis_away(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot be reached now (so the write is journaled)."""
    return isinstance(exc, RedisUnavailableError) or unreachable(exc)


@dataclass(slots=True)
class HookArgs:
    """A parsed hook command line plus the stdin payload."""

    command: str
    values: dict[str, str] = field(default_factory=dict)
    bools: dict[str, bool] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)
    stdin: StdinPayload = field(default_factory=lambda: StdinPayload("absent"))

    def flag(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None

    def truthy(self, name: str) -> bool:
        return self.bools.get(name, False)


@dataclass(slots=True)
class Outcome:
    """What a hook did; printed as JSON with ``--format json``."""

    command: str
    session_id: str = ""
    recorded: bool = False
    duplicate: bool = False
    created: bool = False
    namespace: str = ""
    redis: str = ""
    event: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failed: bool = False
    text: str | None = None
    journaled: bool = False
    log_lines: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "command": self.command,
            "session_id": self.session_id,
            "recorded": self.recorded,
            "journaled": self.journaled,
            "duplicate": self.duplicate,
            "created": self.created,
            "namespace": self.namespace,
            "redis": self.redis,
            "event": self.event,
            **self.extra,
            "warnings": self.warnings,
        }


class Ctx:
    """One hook run: its arguments, outcome, and a lazily opened connection."""

    def __init__(
        self,
        args: HookArgs,
        out: Outcome,
        stack: contextlib.ExitStack,
        state_dir: Path | None,
        driver: str,
    ) -> None:
        self.args = args
        self.out = out
        self._stack = stack
        self._state_dir = state_dir
        self._driver = driver
        self._conn: Connection | None = None
        self.target: RedisTarget | None = None
        self.keys = Keys("default")

    @property
    def folder(self) -> Path:
        """The state folder this hook uses."""
        from hivemind.swarm.paths import default_state_dir

        return (self._state_dir or default_state_dir()).resolve()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            target = self._stack.enter_context(redis_target(self._state_dir))
            conn = open_connection(target.url, driver=self._driver)
            self._stack.callback(conn.close)
            self.target, self._conn, self.keys = target, conn, Keys(target.namespace)
            self.out.namespace, self.out.redis = target.namespace, target.mode
            _replay_journal(self)  # what earlier hooks journaled goes first, in order
        return self._conn

    def warn(self, message: str) -> None:
        self.out.warnings.append(message)

    def stdin(self, *path: str) -> str | None:
        return self.args.stdin.get(*path) if self.args.stdin.status == "ok" else None

    def explain_missing(self, what: str) -> None:
        """Warn that nothing was recorded, mentioning an empty stdin if that is why."""
        if self.args.stdin.status == "empty":
            self.warn("stdin was empty; expected Claude Code hook JSON or flags")
        self.warn(f"{self.args.command}: no {what} given; nothing recorded")

    def named_session(self) -> str | None:
        """A session named by flag, environment, running swarm or Claude Code."""
        sid = self.args.flag("session-id") or env_str("session_id")
        if not sid:
            conn = self.conn
            if self.target is not None and self.target.mode == "swarm":
                raw = conn.call("HGET", self.keys.swarm, "session_id")
                sid = _s(raw) if raw else self.target.swarm.session_id if self.target.swarm else ""
        return sid or self.stdin("session_id") or None

    def session(self, *, create: bool) -> str | None:
        """The session to write into; ``None`` (with a warning) when there is none."""
        sid = self.named_session()
        if not sid:
            if create:
                sid = resolve_current(self.conn, self.keys, new_session_id())
            else:
                raw = self.conn.call("GET", self.keys.hooks_current)
                sid = _s(raw) if raw else None
        if sid and not valid_session_id(sid):
            self.warn(f"invalid session id {sid!r}; nothing recorded")
            return None
        if sid:
            self.out.session_id = sid
        return sid

    def dedup_key(self, kind: str, *material: str, bucket: bool = True) -> str:
        """``kind:tool_use_id`` when Claude Code gave one, else a hash of the content.

        ``bucket`` adds a 5-second time bucket, so a retried call collapses
        while the same command run again later is a new event.
        """
        tool_use_id = self.stdin("tool_use_id")
        if tool_use_id:
            return f"{kind}:{tool_use_id}"
        parts = [kind, *material]
        if bucket:
            parts.append(str(int(time.time() // DEDUP_BUCKET_S)))
        return f"{kind}:{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}"

    def _cap(self, fields: dict[str, Any]) -> None:
        """Cut every string field past :data:`MAX_FIELD_CHARS`, with a warning."""
        for name, value in list(fields.items()):
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                fields[name] = value[:MAX_FIELD_CHARS]
                self.warn(f"{name} cut to {MAX_FIELD_CHARS} characters (was {len(value)})")

    def record(
        self,
        kind: str,
        payload: dict[str, Any],
        dedup: str,
        *,
        create: bool = True,
        sid: str | None = None,
        counters: dict[str, int | float] | None = None,
        memory: tuple[str, str, dict[str, Any]] | None = None,
        **flags: bool,
    ) -> bool:
        """Append one event to the session; return whether it was new.

        When Redis is unreachable the event goes to the journal instead
        (``set_current``/``clear_current`` ride along) and this returns True.
        """
        ts = time.time()
        try:
            sid = sid or self.session(create=create)
        except (RespError, RedisUnavailableError) as exc:
            if not redis_away(exc):
                raise
            return self._journal(kind, payload, dedup, sid, counters, memory, ts, exc, **flags)
        if sid is None:
            return False
        payload = self._with_claude_session(payload, sid)
        self._cap(payload)
        mem = self._memory(memory, sid)
        meta = self._meta()
        try:
            added, created = record(
                self.conn,
                self.keys,
                sid,
                kind,
                payload,
                dedup_key=dedup,
                maxlen=stream_maxlen(),
                meta=meta,
                counters=counters,
                memory=mem,
                ts=ts,
            )
            if flags.get("set_current"):
                self.conn.call("SET", self.keys.hooks_current, sid)
            if flags.get("clear_current"):
                self.conn.call("EVAL", CLEAR_CURRENT_LUA, 1, self.keys.hooks_current, sid)
        except (RespError, RedisUnavailableError) as exc:
            if not redis_away(exc):
                raise
            return self._journal(kind, payload, dedup, sid, counters, memory, ts, exc, **flags)
        self.out.recorded, self.out.duplicate, self.out.created = added, not added, created
        self.out.event = {"kind": kind, **payload}
        return added

    def _with_claude_session(self, payload: dict[str, Any], sid: str) -> dict[str, Any]:
        claude_sid = self.stdin("session_id")
        if claude_sid and claude_sid != sid:
            payload["claude_session_id"] = claude_sid
        return payload

    def _memory(
        self, memory: tuple[str, str, dict[str, Any]] | None, sid: str
    ) -> tuple[str, str, str] | None:
        if memory is None:
            return None
        memory[2]["session_id"] = sid
        self._cap(memory[2])
        return (
            memory[0][:MAX_FIELD_CHARS],
            memory[1][:MAX_FIELD_CHARS],
            json.dumps(memory[2], separators=(",", ":")),
        )

    def _meta(self) -> dict[str, str]:
        meta = {"source": "claude-code" if self.args.stdin.status == "ok" else "hooks"}
        cwd = self.stdin("cwd")
        if cwd:
            meta["cwd"] = cwd[:MAX_FIELD_CHARS]
        return meta

    def offline_session(self) -> str:
        """The session a write goes to when Redis is away ("" = the current one, at replay)."""
        from hivemind.hooks.target import offline_target

        return (
            self.args.flag("session-id")
            or env_str("session_id")
            or offline_target(self.folder)[1]
            or self.stdin("session_id")
            or ""
        )

    def _journal(
        self,
        kind: str,
        payload: dict[str, Any],
        dedup: str,
        sid: str | None,
        counters: dict[str, int | float] | None,
        memory: tuple[str, str, dict[str, Any]] | None,
        ts: float,
        why: BaseException,
        **flags: bool,
    ) -> bool:
        """Keep the event in the local journal (Redis is away); True when it is on disk."""
        from hivemind.hooks import journal
        from hivemind.hooks.target import offline_target

        folder = self.folder
        ns, _ = offline_target(folder)
        sid = sid or self.offline_session()
        if sid and not valid_session_id(sid):
            self.warn(f"invalid session id {sid!r}; nothing recorded")
            return False
        payload = self._with_claude_session(payload, sid) if sid else payload
        self._cap(payload)
        mem = self._memory(memory, sid) if memory is not None else None
        entry: dict[str, Any] = {
            "ts": ts,
            "ns": ns,
            "session_id": sid,
            "kind": kind,
            "payload": payload,
            "dedup": dedup,
            "maxlen": stream_maxlen(),
            "meta": self._meta(),
            "counters": counters or {},
            "memory": list(mem) if mem else None,
            **{k: True for k, v in flags.items() if v},
        }
        try:
            size = journal.append(folder, entry)
        except journal.JournalError as exc:
            self.warn(str(exc))
            self.out.failed = True
            self.out.log_lines.append(f"{kind}: NOT stored: {exc}")
            return False
        reason = str(why).splitlines()[0] if str(why) else type(why).__name__
        self.out.journaled = self.out.recorded = True
        self.out.session_id, self.out.namespace, self.out.redis = sid, ns, "journal"
        self.out.event = {"kind": kind, **payload}
        self.out.log_lines.append(
            f"{kind}: Redis unreachable ({reason}); journaled (session {sid or 'current'}, "
            f"key {dedup}) in {journal.journal_path(folder)} ({size} bytes waiting)"
        )
        return True


def _s(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _replay_journal(ctx: Ctx) -> None:
    """This hook reached Redis: replay what earlier hooks journaled (one stat when none)."""
    from hivemind.hooks import journal

    folder = ctx.folder
    if journal.pending(folder) == 0:
        return
    assert ctx._conn is not None
    try:
        result = journal.replay(ctx._conn, folder)
    except (journal.JournalError, RespError, OSError) as exc:
        ctx.out.log_lines.append(f"journal replay failed: {exc}")
        return
    if not result.busy:
        ctx.out.log_lines.append(result.summary())
