"""The ``hivemind`` command line (typer). Each command body calls a library function.

Errors are one line on stderr with exit 1 (failure) or 2 (usage); the
traceback appears only with ``--debug`` (accepted anywhere on the line).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hivemind.swarm.cli.options import JsonOpt, NamespaceOpt, StateDirOpt
from hivemind.swarm.cli.sessions import memory_app, session_app
from hivemind.swarm.errors import EXIT_FAILURE, EXIT_USAGE, HivemindError, UsageError
from hivemind.swarm.observe.status import SwarmStatus, collect_status
from hivemind.swarm.safe_text import inert, printable
from hivemind.swarm.settings import Settings, load_settings

__all__ = ["app", "run"]

app = typer.Typer(
    name="hivemind",
    help="Keep Python applications under a memory target with a swarm of Ray agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
swarm_app = typer.Typer(help="Start, stop and inspect the swarm.", no_args_is_help=True)
app.add_typer(swarm_app, name="swarm")
app.add_typer(session_app, name="session")
app.add_typer(memory_app, name="memory")

out = Console(soft_wrap=True)
err = Console(stderr=True)


@swarm_app.command("up")
def swarm_up(
    namespace: NamespaceOpt = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url", help="External Redis (redis://, rediss://, unix://); default: embedded"
        ),
    ] = None,
    redis_url_file: Annotated[
        Path | None,
        typer.Option(
            "--redis-url-file",
            help="Read the Redis URL from this file (yours, mode 0600): no password in `ps`",
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Join this Ray cluster; default: local Ray")
    ] = None,
    target_mb: Annotated[
        float | None, typer.Option("--target-mb", help="Memory target per guarded process, MB")
    ] = None,
    session_id: Annotated[
        str | None, typer.Option("--session-id", help="Start or resume this session")
    ] = None,
    state_dir: StateDirOpt = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once ready; stop with `swarm down`")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT"),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address for --metrics-port")
    ] = "127.0.0.1",
) -> None:
    """Start Redis, Ray and the four agents; stay in the foreground until Ctrl-C."""
    settings = load_settings(
        namespace=namespace,
        redis_url=redis_url,
        redis_url_file=redis_url_file,
        ray_address=ray_address,
        target_mb=target_mb,
        session_id=session_id,
        state_dir=state_dir,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    if detach:
        from hivemind.swarm.lifecycle.detach import start_detached

        with err.status("starting the swarm…"):
            info = start_detached(settings)
        out.print(
            f"swarm ready: namespace [bold]{info.namespace}[/], pid {info.pid}, "
            f"session [bold]{info.session_id}[/], state {settings.state_dir}; "
            "stop it with `hivemind swarm down`"
        )
        if settings.metrics_port:
            out.print(f"metrics: http://{settings.metrics_host}:{settings.metrics_port}/metrics")
        return
    _run_foreground(settings)


def _run_foreground(settings: Settings) -> None:
    from hivemind.swarm.lifecycle.supervisor import (
        Swarm,
        exit_now,
        run_until_signalled,
        stop_after_head_loss,
    )

    swarm = Swarm(settings)
    with err.status("starting Redis, Ray and the agents…"):
        swarm.start()
    try:
        out.print(
            f"swarm ready: namespace [bold]{settings.namespace}[/], "
            f"session [bold]{swarm.session_id}[/] "
            f"({'new' if swarm.session_created else 'resumed'}), "
            f"redis {'embedded' if settings.embedded else 'external'}, "
            f"state {settings.state_dir}. Ctrl-C stops it."
        )
        if settings.metrics_port is not None:
            out.print(f"metrics: {swarm.metrics_url}")
        stop = threading.Event()
        with Live(
            _status_line(settings), console=out, refresh_per_second=2, transient=True
        ) as live:

            def tick() -> None:
                swarm.tick()
                live.update(_status_line(settings))

            run_until_signalled(swarm, stop, tick=tick)
    finally:
        if swarm.head_lost.is_set():
            # Only a detached swarm's keeper starts a supervisor again; here we stop cleanly.
            print(f"hivemind: {stop_after_head_loss(swarm)}", file=sys.stderr, flush=True)
            os._exit(EXIT_FAILURE)  # Ray's atexit hooks must not run against a dead head
        with err.status("stopping…"):
            swarm.stop()
    out.print("swarm stopped")
    if swarm.ray_abandoned:  # Ray's atexit hook would wait on the wedged Ray again
        exit_now(0)


def _status_line(settings: Settings) -> str:
    try:
        st = collect_status(settings.state_dir, settings.heartbeat_s)
    except HivemindError as exc:
        return f"[red]●[/] {escape(str(exc))}"
    except Exception as exc:  # a status tick never stops a foreground swarm
        return f"[red]●[/] status failed: {escape(type(exc).__name__)}: {escape(str(exc))}"
    alive = sum(a.alive for a in st.agents)
    colour = {"conservative": "green", "balanced": "yellow", "aggressive": "orange3"}.get(
        st.level, "red"
    )
    return (
        f"[{colour}]●[/] hivemind {st.namespace} · agents {alive}/{len(st.agents)} · "
        f"level [{colour}]{st.level}[/] · targets {len(st.targets)} · "
        f"redis {st.redis.mode} {st.redis.version} · up {st.uptime_s:.0f}s"
    )


@swarm_app.command("down")
def swarm_down(state_dir: StateDirOpt = None) -> None:
    """Stop the swarm running on this state folder (from any shell)."""
    from hivemind.swarm.lifecycle.detach import stop_swarm
    from hivemind.swarm.paths import default_state_dir

    folder = (state_dir or default_state_dir()).resolve()
    with err.status("stopping the swarm…"):
        info = stop_swarm(folder)
    where = f"namespace {info.namespace}, " if info.namespace else ""
    out.print(f"swarm stopped ({where}pid {info.pid})")


@swarm_app.command("status")
def swarm_status(state_dir: StateDirOpt = None, as_json: JsonOpt = False) -> None:
    """Show agents, targets, Redis, namespace, session and the current level."""
    from hivemind.swarm.paths import default_state_dir

    folder = (state_dir or default_state_dir()).resolve()
    st = collect_status(folder)
    if as_json:
        out.print_json(st.model_dump_json())
    elif not st.redis.reachable:
        _say(st.problem)
    else:
        _print_status(st)
    if not st.redis.reachable:
        raise typer.Exit(EXIT_FAILURE)  # Redis is down: the one line (or the JSON) says why


def _print_status(st: SwarmStatus) -> None:
    out.print(
        f"[bold]hivemind[/] namespace [bold]{st.namespace}[/] · state {_e(st.state)} · "
        f"pid {st.pid} · up {st.uptime_s:.0f}s · level [bold]{_e(st.level)}[/] · "
        f"session {_e(st.session_id or '-')}"
    )
    r = st.redis
    out.print(f"redis: {r.mode} {r.version} · {r.persistence} · {r.used_memory_mb} MB · {r.url}")
    if r.error:
        out.print(f"[bold red]redis error: {_e(r.error)}[/]", highlight=False)
    agents = Table("agent", "role", "pid", "alive", "restarts", "last seen", box=None)
    for a in st.agents:
        agents.add_row(
            a.name,
            a.role,
            str(a.pid or "-"),
            "[green]yes[/]" if a.alive else "[red]no[/]",
            str(a.restarts),
            f"{a.last_seen_s:.1f}s ago" if a.last_seen_s is not None else "never",
        )
    out.print(agents)
    if st.targets:
        targets = Table("target", "pid", "rss MB", "target MB", "level", "last action", box=None)
        for t in st.targets:
            targets.add_row(
                _e(t.name),
                str(t.pid or "-"),
                f"{t.rss_mb:.1f}",
                f"{t.target_mb:.0f}",
                _e(t.level),
                _e(t.last_action),
            )
        out.print(targets)
        for t in st.targets:
            if t.guard:
                out.print(f"  {t.name}: {t.guard}", markup=False, highlight=False)
        _print_reclaim(st)
    else:
        out.print("targets: none guarded (use `hivemind run -- python app.py`)")
    if st.bus_errors:
        out.print(f"bus errors: {_e(json.dumps(st.bus_errors))}")
    if st.bad_values:
        out.print(f"bad values in Redis (shown as unknown): {st.bad_values}")
    restarted = {k: v for k, v in st.restarts.items() if v}
    if restarted:
        out.print("restarts: " + ", ".join(f"{k} {v}" for k, v in restarted.items()))
    if st.problem:
        out.print(f"[bold red]{_e(st.problem)}[/]", highlight=False)


def _e(value: object) -> str:
    """Text from Redis made inert for rich: no markup, no control characters."""
    return inert(value)


def _print_reclaim(st: SwarmStatus) -> None:
    from hivemind.swarm.observe.reclaim_view import reclaim_tables

    for t in st.targets:
        r = t.reclaim
        if not r:
            continue
        try:  # written by the guarded process: data, not trusted structure
            line = (
                f"{_e(t.name)}: {_e(r.get('caches_found', 0))} caches found "
                f"(scan {_e(r.get('scan_ms', 0))} ms), "
                f"~{int(r.get('reclaimable_bytes', 0)) / 2**20:.1f} MB reclaimable, "
                f"{int(r.get('total_freed', 0)) / 2**20:.1f} MB given back so far"
            )
            tables = list(reclaim_tables(t.name, r))
        except (ValueError, TypeError, AttributeError, KeyError):
            out.print(f"{_e(t.name)}: reclaim details unreadable (bad values in Redis)")
            continue
        out.print(line, highlight=False)
        for table in tables:
            out.print(table)


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_command(
    command: Annotated[list[str] | None, typer.Argument(help="The program, after --")] = None,
    target_mb: Annotated[
        float | None, typer.Option("--target-mb", help="Memory target for this process, MB")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Target name in status")] = None,
    state_dir: StateDirOpt = None,
    namespace: NamespaceOpt = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Do not guard: print the caches found, their sizes and hit rates, and the "
            "C heap's fragmentation, at exit (slower: traces allocations)",
        ),
    ] = False,
    explain_after: Annotated[
        float | None,
        typer.Option("--explain-after", help="With --explain: also print after SECONDS"),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Never clear caches matching this name pattern (repeat)"),
    ] = None,
    discover: Annotated[
        bool | None,
        typer.Option("--discover/--no-discover", help="Find and clear the app's lru caches"),
    ] = None,
    malloc_arena_max: Annotated[
        int | None,
        typer.Option("--malloc-arena-max", help="Set glibc's MALLOC_ARENA_MAX in the child"),
    ] = None,
) -> None:
    """Run a Python program guarded by the swarm, with no change to its code."""
    from hivemind.swarm.target.launch import run_guarded

    if target_mb is not None:
        load_settings(target_mb=target_mb)  # validates: one-line error, exit 2
    if namespace is not None:
        load_settings(namespace=namespace)
    if malloc_arena_max is not None and not 1 <= malloc_arena_max <= 1024:
        raise UsageError("--malloc-arena-max must be between 1 and 1024")
    if explain_after is not None and not 0 < explain_after <= 86400:
        raise UsageError("--explain-after must be between 0 and 86400 seconds")
    code = run_guarded(
        list(command or []),
        target_mb=target_mb,
        name=name,
        state_dir=state_dir.resolve() if state_dir else None,
        namespace=namespace,
        explain=explain,
        explain_after=explain_after,
        keep=tuple(keep or ()),
        discover=discover,
        malloc_arena_max=malloc_arena_max,
    )
    raise typer.Exit(code)


@app.command("bench")
def bench_command(
    target_mb: Annotated[
        float, typer.Option("--target-mb", help="Memory target of the guarded workload, MB")
    ] = 256.0,
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer, shorter repeats (about a minute)")
    ] = False,
    workload: Annotated[
        str, typer.Option("--workload", help="demo | widgets | objects | PATH.py:callable")
    ] = "demo",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for results.json, report.md and charts")
    ] = Path("bench-out"),
    as_json: JsonOpt = False,
    repeats: Annotated[int | None, typer.Option("--repeats", hidden=True)] = None,
    seconds: Annotated[float | None, typer.Option("--seconds", hidden=True)] = None,
    phases: Annotated[str | None, typer.Option("--phases", hidden=True)] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", hidden=True)] = None,
) -> None:
    """Measure hivemind on the corpus of apps and the seed report's figures; write a report."""
    from hivemind.swarm.bench.report import run_bench_command
    from hivemind.swarm.bench.runner import PHASES, BenchOptions

    options = BenchOptions(
        target_mb=target_mb,
        quick=quick,
        workload=workload,
        out=out_dir,
        repeats=repeats,
        seconds=seconds,
        phases=tuple(p.strip() for p in phases.split(",")) if phases else PHASES,
        corpus=tuple(c.strip() for c in corpus.split(",")) if corpus else None,
    )
    run_bench_command(options, as_json=as_json)


@app.command("demo")
def demo_command(
    target_mb: Annotated[
        float, typer.Option("--target-mb", help="The demo app's target, MB")
    ] = 256,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of each run")] = 20,
    state_dir: StateDirOpt = None,
) -> None:
    """Run a leaky TUI-like app unguarded, then guarded, and show the swarm at work."""
    from hivemind.swarm.bench.demo import run_demo

    load_settings(target_mb=target_mb)  # validates: one-line error, exit 2
    if not 1 <= seconds <= 3600:
        raise UsageError("--seconds must be between 1 and 3600")
    run_demo(target_mb, seconds, state_dir.resolve() if state_dir else None, out)


@app.command("top")
def top_command(
    state_dir: StateDirOpt = None,
    no_guard: Annotated[
        bool, typer.Option("--no-guard", help="Do not guard the dashboard's own process")
    ] = False,
) -> None:
    """A live dashboard: swarm health, one row per guarded process, decisions as they happen."""
    from hivemind.swarm.paths import default_state_dir

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("hivemind top needs a terminal; use `hivemind swarm status --json`")
    from hivemind.swarm.cli.top.app import run_top

    run_top((state_dir or default_state_dir()).resolve(), guard=not no_guard)


@app.command(
    "hooks",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def hooks_command(ctx: typer.Context) -> None:
    """claude-flow compatible hooks: pre-task, post-edit, session-restore, ..."""
    # The console script sends `hivemind hooks ...` straight to the fast hooks
    # CLI without importing typer; this entry only lists it in --help (and
    # serves callers that go through `run()`).
    from hivemind.hooks.cli import main as hooks_main

    raise typer.Exit(hooks_main(list(ctx.args)))


def _say(line: str) -> None:
    """Print ``hivemind: <line>`` on stderr as one line, whatever it echoes back: an
    argument may hold a newline or a U+2028 line separator (hypothesis found the latter),
    shown escaped (:func:`printable`)."""
    print(printable(f"hivemind: {line}"), file=sys.stderr)


def _usage_error(exc: typer.TyperException) -> int:
    message = exc.format_message().strip()
    ctx = getattr(exc, "ctx", None)
    if message:
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _say(f"{message}{where}")
    return int(getattr(exc, "exit_code", EXIT_USAGE))


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv``; return the exit code (never raises)."""
    debug = "--debug" in argv
    args = [a for a in argv if a != "--debug"]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    try:
        result = app(args=args, prog_name="hivemind", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        _say("aborted")
        return 130
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        return _usage_error(exc)
    except HivemindError as exc:
        if debug:
            traceback.print_exc()
        _say(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _say(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0
