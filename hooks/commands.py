"""The hook commands: what each one records, and the one path that records it.

Each handler reads its inputs from claude-flow flags first and Claude Code's
stdin JSON second, decides what event to write (or warns and writes
nothing), and records it with one atomic script call. A handler never
raises for bad input: it adds a warning. Only Redis failures raise, and the
CLI turns those into a logged warning and exit 0 (unless ``--strict``).

When Redis is unreachable, a write goes to the state folder's journal
(:mod:`hivemind.hooks.journal`) instead and the hook still succeeds; the
next hook that reaches Redis replays the journal first.

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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind.coordinator.sessions.store import (
    SessionView,
    new_session_id,
    open_export,
    printable,
    read_view,
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

__all__ = ["CLEAR_CURRENT_LUA", "HANDLERS", "HookArgs", "Outcome", "format_view", "run_hook"]

DEDUP_BUCKET_S = 5.0
# A hook field (description, file, results...) is cut past this many characters,
# so one hook cannot put megabytes into a session (stdin alone may hold 8 MiB).
MAX_FIELD_CHARS = 16 * 1024
# Compare-and-delete: end the current session only if it is still this one.
CLEAR_CURRENT_LUA = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_CLEAR_CURRENT_LUA = CLEAR_CURRENT_LUA


def _away(exc: BaseException) -> bool:
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
            if not _away(exc):
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
            if not _away(exc):
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


def _positional(ctx: Ctx) -> str | None:
    pos = ctx.args.positionals
    for extra in pos[1:]:
        ctx.warn(f"unexpected argument {extra!r} ignored")
    return pos[0] if pos else None


def _no_positionals(ctx: Ctx) -> None:
    for extra in ctx.args.positionals:
        ctx.warn(f"unexpected argument {extra!r} ignored")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def pre_task(ctx: Ctx) -> None:
    a = ctx.args
    description = (
        a.flag("description")
        or _positional(ctx)
        or ctx.stdin("tool_input", "description")
        or (ctx.stdin("tool_input", "prompt") or "")[:500]
        or None
    )
    explicit_task = a.flag("task-id") or ctx.stdin("tool_use_id")
    if not description and not explicit_task:
        ctx.explain_missing("--description")
        return
    task_id = explicit_task or f"task-{int(time.time() * 1000)}-{os.urandom(4).hex()}"
    payload: dict[str, Any] = {"task_id": task_id, "description": description or ""}
    agent = a.flag("agent-id") or ctx.stdin("tool_input", "subagent_type")
    if agent:
        payload["agent_id"] = agent
    material = [description or "", explicit_task or "", agent or ""]
    ctx.record("pre-task", payload, ctx.dedup_key("pre-task", *material))
    ctx.out.extra["task_id"] = task_id


def post_task(ctx: Ctx) -> None:
    a = ctx.args
    task_id = a.flag("task-id") or _positional(ctx) or ctx.stdin("tool_use_id")
    if not task_id:
        ctx.explain_missing("--task-id")
        return
    payload: dict[str, Any] = {"task_id": task_id, "status": a.flag("status") or "completed"}
    for name in ("agent-id", "results", "metrics"):
        value = a.flag(name)
        if value:
            payload[name.replace("-", "_")] = value
    ctx.record("post-task", payload, ctx.dedup_key("post-task", task_id, payload["status"]))


def _edit_file(ctx: Ctx) -> str | None:
    return (
        ctx.args.flag("file")
        or _positional(ctx)
        or ctx.stdin("tool_input", "file_path")
        or ctx.stdin("tool_input", "notebook_path")
    )


def _file_identity(ctx: Ctx, file: str) -> tuple[str, list[str]]:
    """The file's absolute path and what identifies this version of it."""
    base = Path(ctx.stdin("cwd") or os.getcwd())
    path = (base / file).absolute()
    try:
        st = path.stat()
    except OSError:
        return str(path), [str(path), "missing", str(int(time.time() // DEDUP_BUCKET_S))]
    return str(path), [str(path), str(st.st_mtime_ns), str(st.st_size)]


def pre_edit(ctx: Ctx) -> None:
    file = _edit_file(ctx)
    if not file:
        ctx.explain_missing("--file")
        return
    path, identity = _file_identity(ctx, file)
    payload: dict[str, Any] = {"file": file, "path": path}
    if ctx.args.flag("operation"):
        payload["operation"] = ctx.args.flag("operation")
    ctx.record("pre-edit", payload, ctx.dedup_key("pre-edit", *identity, bucket=False))


def post_edit(ctx: Ctx) -> None:
    a = ctx.args
    file = _edit_file(ctx)
    if not file:
        ctx.explain_missing("--file")
        return
    path, identity = _file_identity(ctx, file)
    memory_key = a.flag("memory-key")
    dedup = ctx.dedup_key("post-edit", *identity, memory_key or "", bucket=False)
    payload: dict[str, Any] = {"file": file, "path": path, "edit_id": dedup}
    tool = ctx.stdin("tool_name")
    if tool:
        payload["tool"] = tool
    memory = None
    if memory_key:
        memory_ns = a.flag("memory-namespace") or a.flag("namespace") or "default"
        payload["memory_key"], payload["memory_namespace"] = memory_key, memory_ns
        entry: dict[str, Any] = {"file": file, "edited_at": _iso(time.time()), "edit_id": dedup}
        memory = (memory_ns, memory_key, entry)
    ctx.record("post-edit", payload, dedup, memory=memory)


def notify(ctx: Ctx) -> None:
    a = ctx.args
    message = (
        a.flag("message")
        or _positional(ctx)
        or ctx.stdin("message")
        or ctx.stdin("hook_event_name")
    )
    if not message:
        ctx.explain_missing("--message")
        return
    level = a.flag("level") or "info"
    payload: dict[str, Any] = {"message": message[:4096], "level": level}
    event = ctx.stdin("hook_event_name")
    if event:
        payload["hook_event"] = event
    ctx.record("notify", payload, ctx.dedup_key("notify", message, level, event or ""))


def session_start(ctx: Ctx) -> None:
    _no_positionals(ctx)
    try:
        sid = ctx.session(create=True)
    except (RespError, RedisUnavailableError) as exc:
        if not _away(exc):
            raise
        sid = ctx.offline_session()  # "" = whichever is current when the journal is replayed
    if sid is None:
        return
    payload: dict[str, Any] = {"source": ctx.stdin("source") or "cli"}
    key = ctx.dedup_key("session-start", sid or "current")
    ctx.record("session-start", payload, key, sid=sid or None, set_current=True)


def session_restore(ctx: Ctx) -> None:
    sid = (
        ctx.args.flag("session-id")
        or _positional(ctx)
        or env_str("session_id")
        or ctx.stdin("session_id")
    )
    if not sid:
        ctx.warn("session-restore: no --session-id given; nothing restored")
        ctx.out.failed = True
        return
    if not valid_session_id(sid):
        ctx.warn(f"invalid session id {sid!r}; nothing restored")
        ctx.out.failed = True
        return
    view = read_view(ctx.conn, ctx.keys, sid, recent=5)
    if view is None:
        ctx.warn(f"unknown session {sid!r} in namespace {ctx.keys.ns}; nothing to restore")
        ctx.out.failed = True
        ctx.out.session_id = sid
        return
    ctx.out.session_id = sid
    ctx.conn.call("SET", ctx.keys.hooks_current, sid)
    ctx.record("session-restore", {}, ctx.dedup_key("session-restore", sid), sid=sid)
    handed = False
    if ctx.target is not None and ctx.target.mode == "swarm":
        # pydantic only on this path, and only when a swarm can take the session.
        from hivemind.swarm.messages import Control
        from hivemind.swarm.seal import seal
        from hivemind.swarm.secret import read_secret

        key = read_secret(ctx.target.state_dir, env_str("secret"))
        msg = seal(Control(op="restore", session_id=sid).model_dump_json(), key)
        handed = int(ctx.conn.call("PUBLISH", ctx.keys.control, msg)) > 0
    ctx.out.extra["restored"] = view_json(view)
    ctx.out.extra["handed_to_coordinator"] = handed
    note = (
        "handed to the running coordinator"
        if handed
        else "no coordinator running; start one with `hivemind swarm up --session-id "
        f"{sid}` or `hivemind session restore {sid}`"
    )
    ctx.out.text = f"{format_view(view)}\nrestore: {note}"


def session_end(ctx: Ctx) -> None:
    _no_positionals(ctx)
    try:
        sid = ctx.session(create=False)
        view = read_view(ctx.conn, ctx.keys, sid, recent=0) if sid else None
    except (RespError, RedisUnavailableError) as exc:
        if not _away(exc):
            raise
        _session_end_offline(ctx)
        return
    if sid is None:
        if not ctx.out.warnings:
            ctx.warn("session-end: no current session; nothing recorded")
        return
    if view is None:
        ctx.warn(f"unknown session {sid!r} in namespace {ctx.keys.ns}; nothing recorded")
        ctx.out.failed = True
        return
    summary = {
        "events": int(view.counters.get("events", 0)) + 1,
        "duration_s": round(time.time() - view.first_ts, 3) if view.first_ts else 0.0,
    }
    ctx.record(
        "session-end", summary, ctx.dedup_key("session-end", sid), sid=sid, clear_current=True
    )
    if ctx.out.journaled:
        return
    export = ctx.args.flag("export")
    if export or ctx.args.truthy("export-metrics"):
        ctx.out.extra["export"] = _export(ctx, sid, export)
    if ctx.args.truthy("generate-summary"):
        fresh = read_view(ctx.conn, ctx.keys, sid, recent=5)
        ctx.out.text = format_view(fresh or view)
        ctx.out.extra["summary"] = view_json(fresh or view)


def _session_end_offline(ctx: Ctx) -> None:
    """Redis is away: journal the end of the session; its summary waits for Redis."""
    sid = ctx.offline_session()
    key = ctx.dedup_key("session-end", sid or "current")
    ctx.record(
        "session-end", {"journaled": True}, key, sid=sid or None, create=False, clear_current=True
    )
    if ctx.args.flag("export") or ctx.args.truthy("export-metrics"):
        ctx.warn("Redis unreachable: no export written (the session end is journaled)")
    if ctx.args.truthy("generate-summary"):
        ctx.warn("Redis unreachable: no summary (the session end is journaled)")


def _export(ctx: Ctx, sid: str, where: str | None) -> str:
    """Write the session export (JSON) through the full SessionStore; rare, so heavy is fine."""
    from hivemind.coordinator.sessions.recorder import SessionStore
    from hivemind.swarm.paths import ensure_private_dir
    from hivemind.swarm.redis.connection import connect

    assert ctx.target is not None
    path = Path(where) if where else ctx.target.state_dir / "exports" / f"{sid}.json"
    if where:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        ensure_private_dir(path.parent, "exports folder")
    client = connect(ctx.target.url)
    try:
        with open_export(path) as fh:  # never through a symlink
            SessionStore(client, ctx.keys).export(sid, "json", fh)
    finally:
        client.close()
    return str(path)


def view_json(view: SessionView) -> dict[str, Any]:
    """A session view as plain JSON-ready data."""
    return {
        "session_id": view.session_id,
        "level": view.level or "conservative",
        "first_ts": view.first_ts,
        "last_ts": view.last_ts,
        "meta": view.meta,
        "counters": view.counters,
        "settings": view.settings,
        "learned": {
            k: {
                "n": r.n,
                "mean_bytes_freed": r.mean_bytes_freed,
                "mean_ms": r.mean_ms,
                "last_ts": r.last_ts,
            }
            for k, r in view.learned.items()
        },
        "stream_len": view.stream_len,
        "recent": [{"id": e.id, "kind": e.kind, "ts": e.ts, "data": e.data} for e in view.recent],
    }


def format_view(view: SessionView) -> str:
    """A few human lines: what a session holds (control characters shown, not sent)."""
    return printable_lines(_format_view(view))


def printable_lines(text: str) -> str:
    """Every line of ``text`` through :func:`printable` (the line breaks stay)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _format_view(view: SessionView) -> str:
    c = view.counters
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "events") or "none"
    lines = [
        f"session {view.session_id}: {int(c.get('events', 0))} events "
        f"({view.stream_len} kept), level {view.level or 'conservative'}, "
        f"{_iso(view.first_ts) if view.first_ts else '-'} .. "
        f"{_iso(view.last_ts) if view.last_ts else '-'}",
        f"  counters: {kinds}",
    ]
    if view.learned:
        best = sorted(view.learned.items(), key=lambda kv: -kv[1].mean_bytes_freed)[:5]
        lines.append(
            "  learned: "
            + ", ".join(
                f"{k} n={r.n} freed~{r.mean_bytes_freed / 1e6:.1f}MB in {r.mean_ms:.1f}ms"
                for k, r in best
            )
        )
    for e in view.recent:
        detail = e.data.get("description") or e.data.get("file") or e.data.get("message") or ""
        lines.append(f"  {_iso(e.ts)} {printable(e.kind)} {printable(detail)[:80]}".rstrip())
    return "\n".join(lines)


HANDLERS: dict[str, Callable[[Ctx], None]] = {
    "pre-task": pre_task,
    "post-task": post_task,
    "pre-edit": pre_edit,
    "post-edit": post_edit,
    "notify": notify,
    "session-start": session_start,
    "session-restore": session_restore,
    "session-end": session_end,
}


def run_hook(args: HookArgs, *, state_dir: Path | None = None, driver: str = "auto") -> Outcome:
    """Run one hook command; Redis is reached (or leased) only if something is written."""
    out = Outcome(args.command)
    with contextlib.ExitStack() as stack:
        ctx = Ctx(args, out, stack, state_dir, driver)
        try:
            HANDLERS[args.command](ctx)
        except (RespError, RedisUnavailableError) as exc:
            if not _away(exc):
                raise
            # A read (session-restore) cannot be journaled: say so, once.
            ctx.warn(f"{args.command}: Redis unreachable ({exc}); nothing read")
            out.failed = True
            return out
    return out


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
