"""``hivemind session ...`` and ``hivemind memory ...``: thin typer shells.

Every body resolves the Redis to read (running swarm, ``HIVEMIND_REDIS_URL``
or the leased embedded server, as the hooks do) and calls a library
function; errors are :class:`~hivemind.swarm.errors.HivemindError`
subclasses that the main CLI prints as one line.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hivemind.coordinator.sessions.recorder import (
    SessionSnapshot,
    SessionStore,
    request_restore,
)
from hivemind.coordinator.sessions.store import printable
from hivemind.hooks.memory import MemoryEntry, memory_get, memory_list, memory_search
from hivemind.hooks.target import RedisTarget, redis_target
from hivemind.swarm.cli.options import JsonOpt, NamespaceOpt, StateDirOpt
from hivemind.swarm.env import env_str
from hivemind.swarm.errors import HivemindError, RedisUnavailableError
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.resp import Connection, RespError, open_connection
from hivemind.swarm.secret import read_secret

__all__ = ["memory_app", "session_app"]

session_app = typer.Typer(
    help="List, show, export and restore optimization sessions.", no_args_is_help=True
)
memory_app = typer.Typer(
    help="Read memory entries written by `hooks post-edit --memory-key`.", no_args_is_help=True
)

out = Console(soft_wrap=True)

SessionArg = Annotated[str, typer.Argument(help="Session id (see `hivemind session list`).")]
MemNsOpt = Annotated[
    str | None, typer.Option("--namespace", help="Memory namespace [default: all; get: default]")
]


@contextlib.contextmanager
def open_store(
    state_dir: Path | None = None, namespace: str | None = None
) -> Iterator[tuple[SessionStore, RedisTarget]]:
    """A :class:`SessionStore` on the Redis the hooks would use, for the block."""
    with redis_target(state_dir, namespace=namespace) as target:
        client = connect(target.url)
        try:
            yield SessionStore(client, Keys(target.namespace)), target
        finally:
            client.close()


@contextlib.contextmanager
def _raw(state_dir: Path | None) -> Iterator[tuple[Connection, Keys]]:
    with redis_target(state_dir) as target:
        try:
            conn = open_connection(target.url)
        except RespError as exc:
            raise RedisUnavailableError(f"cannot reach Redis: {exc}") from None
        try:
            yield conn, Keys(target.namespace)
        finally:
            conn.close()


def _e(value: object) -> str:
    """Session data made inert for rich: no markup, no control characters."""
    return escape(printable(value))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@session_app.command("list")
def session_list(
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    namespace: NamespaceOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sessions by last activity."""
    with open_store(state_dir, namespace) as (store, _):
        rows = store.list_sessions(limit)
    if as_json:
        print(json.dumps([r.model_dump() for r in rows]))
        return
    if not rows:
        out.print(
            "no sessions yet (start one with `hivemind swarm up` or `hivemind hooks pre-task`)"
        )
        return
    table = Table("session", "last activity", "started", "events", "level", "source", box=None)
    for r in rows:
        table.add_row(
            _e(r.session_id),
            _when(r.last_ts),
            _when(r.first_ts),
            str(r.events),
            _e(r.level),
            _e(r.source),
        )
    out.print(table)


@session_app.command("show")
def session_show(
    session_id: SessionArg,
    events: Annotated[int, typer.Option("--events", help="Show this many latest events.")] = 20,
    namespace: NamespaceOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Timeline, decisions, bytes freed, learned table and counters of one session."""
    with open_store(state_dir, namespace) as (store, _):
        snap = store.snapshot(session_id, recent=events)
    if as_json:
        print(snap.model_dump_json())
        return
    _print_snapshot(snap)


def _print_snapshot(snap: SessionSnapshot) -> None:
    c = snap.counters
    out.print(
        f"[bold]session {_e(snap.session_id)}[/] · level [bold]{_e(snap.level)}[/] · "
        f"{snap.event_count} events ({snap.stream_len} kept) · "
        f"{_when(snap.first_ts)} → {_when(snap.last_ts)}"
    )
    out.print(
        f"decisions {int(c.get('decision', 0))} · acks {int(c.get('ack', 0))} · "
        f"bytes freed {float(c.get('bytes_freed', 0)) / 1e6:.1f} MB"
    )
    if snap.meta:
        out.print("meta: " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted(snap.meta.items())))
    if snap.settings:
        pairs = sorted(snap.settings.items())
        out.print("settings: " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in pairs))
    other = {k: v for k, v in c.items() if k not in ("events", "decision", "ack", "bytes_freed")}
    if other:
        out.print("counters: " + ", ".join(f"{_e(k)} {v}" for k, v in sorted(other.items())))
    if snap.learned:
        table = Table("action", "n", "mean freed MB", "mean ms", "last", box=None, title="learned")
        for key, e in sorted(snap.learned.items(), key=lambda kv: -kv[1].mean_bytes_freed):
            table.add_row(
                _e(key),
                str(e.n),
                f"{e.mean_bytes_freed / 1e6:.2f}",
                f"{e.mean_ms:.1f}",
                _when(e.last_ts),
            )
        out.print(table)
    for target, report in sorted(snap.reclaim.items()):
        _print_reclaim(target, report)
    if snap.recent:
        table = Table("time", "kind", "detail", box=None, title="latest events")
        for ev in reversed(snap.recent):
            p = ev.payload
            detail = (
                p.get("description") or p.get("file") or p.get("message") or p.get("reason") or ""
            )
            if not detail:
                detail = json.dumps(p)[:100]
            table.add_row(_when(ev.ts), _e(ev.kind), _e(str(detail)[:100]))
        out.print(table)
    out.print(
        f"memory against target over time: `hivemind session plot {snap.session_id} "
        f"--out {snap.session_id}.png`",
        highlight=False,
    )


@session_app.command("plot")
def session_plot(
    session_id: SessionArg,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write")],
    max_targets: Annotated[
        int, typer.Option("--max-targets", min=1, max=50, help="Panels for the highest peaks")
    ] = 12,
    namespace: NamespaceOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Memory against target for each target over the session, decisions and acks marked."""
    from hivemind.swarm.cli.session_plot import build_figure, load_plot_data, save_png

    if out_file.suffix.lower() != ".png":
        raise typer.BadParameter("the plot is a PNG: give a FILE.png", param_hint="--out")
    with open_store(state_dir, namespace) as (store, _):
        data = load_plot_data(store.client, store.keys, session_id)
    fig = build_figure(data, max_targets=max_targets)
    size = save_png(fig, out_file)
    shown = min(len(data.targets), max_targets)
    print(
        f"wrote {out_file} ({size / 1024:.0f} KB): {shown} of {len(data.targets)} targets",
        file=sys.stderr,
    )


def _print_reclaim(target: str, report: dict[str, Any]) -> None:
    """The caches ``target`` found and what its last reclaims gave back."""
    from hivemind.swarm.observe.reclaim_view import reclaim_tables

    for table in reclaim_tables(target, report):
        out.print(table)


@session_app.command("export")
def session_export(
    session_id: SessionArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv")] = "json",
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="File [default: stdout]")
    ] = None,
    namespace: NamespaceOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Every event still in the session's stream, as JSON or CSV."""
    if fmt not in ("json", "csv"):
        raise typer.BadParameter("use json or csv", param_hint="--format")
    kind: Literal["json", "csv"] = "json" if fmt == "json" else "csv"
    with open_store(state_dir, namespace) as (store, _):
        n = store.export(session_id, kind, out_file if out_file is not None else sys.stdout)
    if out_file is not None:
        print(f"exported {n} events of {session_id} to {out_file}", file=sys.stderr)


@session_app.command("restore")
def session_restore(
    session_id: SessionArg,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the coordinator.")
    ] = 5.0,
    namespace: NamespaceOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand a session back to the running coordinator, or show what would be restored."""
    with open_store(state_dir, namespace) as (store, target):
        snap = store.snapshot(session_id, recent=0)
        running = target.mode == "swarm"
        taken = (
            request_restore(
                store.client,
                store.keys,
                session_id,
                key=read_secret(target.state_dir, env_str("secret")),
                timeout_s=timeout,
            )
            if running
            else False
        )
    if as_json:
        print(
            json.dumps(
                {
                    "session_id": session_id,
                    "swarm_running": running,
                    "restored": taken,
                    "plan": snap.model_dump(mode="json"),
                }
            )
        )
    if running and not taken:
        raise HivemindError(
            f"the running coordinator did not take session {session_id} within {timeout:g}s"
        )
    if as_json:
        return
    if taken:
        out.print(f"session {session_id} restored into the running swarm at level {_e(snap.level)}")
        return
    out.print(f"no swarm running; restoring {session_id} would bring back:")
    settings = json.dumps(snap.settings)
    out.print(
        f"  level {_e(snap.level)}, {len(snap.learned)} learned actions, settings {_e(settings)}"
    )
    for key, e in sorted(snap.learned.items(), key=lambda kv: -kv[1].mean_bytes_freed)[:10]:
        out.print(f"  {_e(key)}: n={e.n}, ~{e.mean_bytes_freed / 1e6:.2f} MB in {e.mean_ms:.1f} ms")
    out.print(f"start it with `hivemind swarm up --session-id {session_id}`")


def _print_entries(entries: list[MemoryEntry], as_json: bool) -> None:
    if as_json:
        print(json.dumps([e.as_json() for e in entries]))
        return
    if not entries:
        out.print("no memory entries")
        return
    table = Table("namespace", "key", "value", box=None)
    for e in entries:
        table.add_row(_e(e.namespace), _e(e.key), _e(json.dumps(e.value)))
    out.print(table)


@memory_app.command("get")
def memory_get_cmd(
    key: Annotated[str, typer.Argument(help="Memory key, e.g. swarm/agent/optimization")],
    namespace: Annotated[str, typer.Option("--namespace", help="Memory namespace")] = "default",
    state_dir: StateDirOpt = None,
) -> None:
    """Print one entry as JSON; exit 1 when the key is not there."""
    with _raw(state_dir) as (conn, keys):
        entry = memory_get(conn, keys, key, namespace)
    if entry is None:
        raise HivemindError(f"no memory entry {key!r} in namespace {namespace!r}")
    print(json.dumps(entry.value))


@memory_app.command("list")
def memory_list_cmd(
    namespace: MemNsOpt = None, state_dir: StateDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Every memory entry (of one namespace with --namespace)."""
    with _raw(state_dir) as (conn, keys):
        entries = memory_list(conn, keys, namespace)
    _print_entries(entries, as_json)


@memory_app.command("search")
def memory_search_cmd(
    pattern: Annotated[
        str, typer.Argument(help="Glob over keys (swarm/*), or a substring of key or value")
    ],
    namespace: MemNsOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Entries whose key matches a glob, or whose key or value contains a substring."""
    with _raw(state_dir) as (conn, keys):
        entries = memory_search(conn, keys, pattern, namespace)
    _print_entries(entries, as_json)
