"""The hook commands: what each one records.

Each handler reads its inputs from claude-flow flags first and Claude Code's
stdin JSON second, decides what event to write (or warns and writes
nothing), and records it through :meth:`Ctx.record
<hivemind.hooks.context.Ctx.record>`, one atomic script call. A handler never
raises for bad input: it adds a warning. Only Redis failures raise, and the
CLI turns those into a logged warning and exit 0 (unless ``--strict``).

How a hook finds its session, and how a write is journaled when Redis is
unreachable, is in :mod:`hivemind.hooks.context`; how a session is shown, in
:mod:`hivemind.hooks.render`. :func:`run_hook` is the entry point.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hivemind.coordinator.sessions.store import open_export, read_view, valid_session_id
from hivemind.hooks.context import (
    CLEAR_CURRENT_LUA,
    DEDUP_BUCKET_S,
    Ctx,
    HookArgs,
    Outcome,
    redis_away,
)
from hivemind.hooks.render import format_view, iso_time, view_json
from hivemind.swarm.env import env_str
from hivemind.swarm.errors import RedisUnavailableError
from hivemind.swarm.redis.resp import RespError

# CLEAR_CURRENT_LUA, HookArgs and Outcome live in context.py, format_view in
# render.py; they stay importable from here, as before the split.
__all__ = ["CLEAR_CURRENT_LUA", "HANDLERS", "HookArgs", "Outcome", "format_view", "run_hook"]


def _positional(ctx: Ctx) -> str | None:
    pos = ctx.args.positionals
    for extra in pos[1:]:
        ctx.warn(f"unexpected argument {extra!r} ignored")
    return pos[0] if pos else None


def _no_positionals(ctx: Ctx) -> None:
    for extra in ctx.args.positionals:
        ctx.warn(f"unexpected argument {extra!r} ignored")


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
        entry: dict[str, Any] = {"file": file, "edited_at": iso_time(time.time()), "edit_id": dedup}
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
        if not redis_away(exc):
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
        if not redis_away(exc):
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
            if not redis_away(exc):
                raise
            # A read (session-restore) cannot be journaled: say so, once.
            ctx.warn(f"{args.command}: Redis unreachable ({exc}); nothing read")
            out.failed = True
            return out
    return out
