"""``hivemind demo``: watch the swarm keep a leaky TUI-like app under its target.

It uses the swarm running on the project's state folder, or starts one
for the demo. It runs the ``demo`` workload (see
:mod:`hivemind.swarm.bench.workloads`) unguarded first, then guarded, printing
each pressure decision and what it freed as it happens, and ends with a
side-by-side summary: peak RSS, time over target, throughput, actions,
bytes freed. In a terminal the guarded run is watched on the ``hivemind top``
dashboard (which closes by itself when the run ends, or earlier with ``q``);
otherwise (a pipe, a file, CI) it prints each decision and ack as a line.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hivemind.swarm.bench.effect import (
    EffectRun,
    SwarmHandle,
    run_guarded_side,
    run_unguarded_side,
    swarm_for,
)
from hivemind.swarm.messages import Ack, Decision

__all__ = ["run_demo"]

_COLOURS = {"conservative": "green", "balanced": "yellow", "aggressive": "orange3"}


def use_dashboard(console: Console) -> bool:
    """True when the demo runs in an interactive terminal (stdin and stdout)."""
    return console.is_terminal and sys.stdin.isatty()


def _guarded_on_dashboard(
    target_mb: float, seconds: float, swarm: SwarmHandle, console: Console
) -> EffectRun:
    """The guarded run in a thread, watched on the ``hivemind top`` dashboard."""
    from hivemind.swarm.cli.top.app import TopApp

    app = TopApp(swarm.state_dir)
    result: list[EffectRun] = []
    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            result.append(run_guarded_side("demo", target_mb, seconds, swarm))
        except BaseException as exc:  # handed back to the caller below
            failure.append(exc)
        finally:
            with contextlib.suppress(Exception):
                app.call_from_thread(app.exit)

    worker = threading.Thread(target=guarded, name="hivemind-demo-guarded", daemon=True)
    worker.start()
    app.run()
    if worker.is_alive():
        with console.status("the guarded run goes on; waiting for it to end…"):
            worker.join()
    if failure:
        raise failure[0]
    return result[0]


def run_demo(
    target_mb: float,
    seconds: float,
    state_dir: Path | None,
    console: Console,
    *,
    dashboard: bool | None = None,
) -> tuple[EffectRun, EffectRun]:
    """Run the demo; return ``(unguarded, guarded)``.

    ``dashboard`` (default: :func:`use_dashboard`) shows the guarded run on
    the live dashboard instead of printing each decision and ack.
    """
    if dashboard is None:
        dashboard = use_dashboard(console)
    with swarm_for(state_dir) as swarm:
        where = "a temporary swarm" if swarm.started_here else f"the swarm in {swarm.state_dir}"
        console.print(
            f"[bold]hivemind demo[/]: a leaky TUI-like app, target {target_mb:.0f} MB, "
            f"{seconds:.0f} s per run, guarded by {where} (namespace {swarm.info.namespace})"
        )
        with console.status("1/2 unguarded run (no hivemind)…"):
            unguarded = run_unguarded_side("demo", target_mb, seconds)
        console.print(
            f"unguarded: peak [bold]{unguarded.peak_rss_mb:.0f} MB[/], "
            f"{unguarded.time_over_target_s:.1f} s over target"
        )
        if dashboard:
            guarded = _guarded_on_dashboard(target_mb, seconds, swarm, console)
            console.print(_summary(unguarded, guarded, target_mb))
            return unguarded, guarded
        console.print("2/2 guarded run: decisions as they happen")

        def on_decision(d: Decision) -> None:
            colour = _COLOURS.get(d.level.value, "red")
            kinds = ", ".join(a.kind.value for a in d.actions)
            console.print(f"  [{colour}]{d.level.value:>12}[/] decided: {kinds}  ({d.reason})")

        def on_ack(a: Ack) -> None:
            latency = (a.applied_ts - a.sample_ts) * 1000 if a.sample_ts else 0.0
            console.print(
                f"  {'':>12} applied in {a.duration_ms:.1f} ms, freed "
                f"{a.bytes_freed / 2**20:+.1f} MB, {latency:.0f} ms after the sample"
            )

        guarded = run_guarded_side(
            "demo", target_mb, seconds, swarm, on_decision=on_decision, on_ack=on_ack
        )
    console.print(_summary(unguarded, guarded, target_mb))
    return unguarded, guarded


def _summary(u: EffectRun, g: EffectRun, target_mb: float) -> Table:
    table = Table(title=f"demo summary (target {target_mb:.0f} MB)")
    table.add_column("")
    table.add_column("unguarded", justify="right")
    table.add_column("guarded", justify="right")
    table.add_row("peak RSS", f"{u.peak_rss_mb:.0f} MB", f"{g.peak_rss_mb:.0f} MB")
    table.add_row(
        "time over target", f"{u.time_over_target_s:.1f} s", f"{g.time_over_target_s:.1f} s"
    )
    ut = u.units / u.duration_s if u.duration_s else 0.0
    gt = g.units / g.duration_s if g.duration_s else 0.0
    table.add_row(
        "throughput", f"{ut:.0f} units/s", f"{gt:.0f} units/s ({gt / ut:.0%})" if ut else "-"
    )
    actions = Counter(a for _, _, acts, _ in g.decisions for a in acts.split("+"))
    table.add_row("actions taken", "-", ", ".join(f"{k} x{n}" for k, n in actions.most_common()))
    freed = sum(b for *_, b in g.decisions)
    table.add_row("bytes freed", "-", f"{freed / 2**20:.1f} MB in {len(g.decisions)} commands")
    for run in (u, g):
        if run.error:
            table.add_row(f"{run.side} error", run.error, "")
    return table
