"""Same-core pairs: the corpus bar's work criteria, measured where the machine's noise cancels.

On a shared 2-core VM a core's speed wanders from run to run by more than
any guard costs: two identical unguarded runs of the TUI app, started at
once on the two cores, did 0.63-1.51x each other's work. Runs one after
the other see the same wander. Two processes pinned to the *same* core at
the same time see the same core at the same moments instead: the scheduler
hands it back and forth every few milliseconds, so a slow second slows
both. Each child runs in its own session, so the kernel's autogroups share
the core between the two processes, not between their threads (a guard
thread does not buy its process a bigger share).

:func:`run_pair` runs one such pair: both children are told the same start
time (``START_AT`` of :mod:`hivemind.swarm.bench.corpus_child`) and measure
the same seconds. Work is units per second; for a whole-run app (mypy), the
inverse of its CPU time (the two checks share the core until the first
ends, and CPU time is what the core gave each).

:func:`pairs_for` says which pairs the bar needs: every hivemind side
against each baseline it is judged by, plus a *control*, unguarded against
itself, whose spread is the instrument's own resolution in that run, and
(feasible apps) the watchdog against itself, the resolution of the
criterion against the watchdog (:data:`~hivemind.swarm.bench.corpus.WATCHDOG_CONTROL`). Each
child shares the core, so time-based costs (a guard's or the watchdog's
polling, per second) weigh twice as much per unit of work as in a solo run:
peaks, pauses and reaction times come from the solo runs, not from pairs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

from hivemind.swarm.bench.corpus import (
    BASELINES,
    CONTROL,
    HIVEMIND_SIDES,
    WATCHDOG_CONTROL,
    CorpusApp,
    Plan,
    SideEnv,
    child_command,
    child_result,
    timed_out,
)

__all__ = ["START_MARGIN_S", "pair_cpu", "pairs_for", "run_pair", "run_pairs"]

START_MARGIN_S = 3.0  # both children start up (imports, a guard attaching) before this


def pairs_for(app: CorpusApp, sides: tuple[str, ...] = HIVEMIND_SIDES) -> list[tuple[str, str]]:
    """The pairs the bar needs for ``app``: each of ``sides`` against both baselines
    (feasible) or unguarded (infeasible), then :data:`CONTROL` and, feasible,
    :data:`WATCHDOG_CONTROL`."""
    base = BASELINES if app.feasible else ("unguarded",)
    controls = [CONTROL, WATCHDOG_CONTROL] if app.feasible else [CONTROL]
    return [*((h, b) for h in sides for b in base), *controls]


def pair_cpu() -> int:
    """The core pairs run on: the highest this process may use (the harness and the
    swarm are left the others)."""
    return max(os.sched_getaffinity(0))


def _work(app: CorpusApp, run: dict[str, Any]) -> float:
    if app.whole_run:
        cpu = float(run.get("cpu_s") or 0.0)
        return 1.0 / cpu if cpu > 0 else 0.0
    d = float(run.get("duration_s") or 0.0)
    return float(run.get("units") or 0) / d if d > 0 else 0.0


def run_pair(
    app: CorpusApp,
    a: str,
    b: str,
    seconds: float,
    where: SideEnv,
    cap_s: float,
    *,
    cpu: int | None = None,
    b_first: bool = False,
) -> dict[str, Any]:
    """Run ``app`` on sides ``a`` and ``b`` at once, both pinned to core ``cpu``.

    Returns ``app``, ``a``, ``b``, ``cpu``, ``ratio`` (a's work over b's, None if
    either side failed), ``late_s`` (the later child's miss of the common start)
    and ``runs`` (both children's records, without timelines). A whole-run app
    still running at ``cap_s`` is killed and counts as timed out (work 0).
    Never raises for a child's failure.
    """
    core = pair_cpu() if cpu is None else cpu
    start_at = time.time() + START_MARGIN_S
    timeout = START_MARGIN_S + (cap_s if app.whole_run else seconds * 4 + 30)
    order = [(b, 1), (a, 0)] if b_first else [(a, 0), (b, 1)]
    runs: list[dict[str, Any]] = [{}, {}]
    with contextlib.ExitStack() as stack:
        children: list[tuple[int, str, subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
        stack.callback(_reap, children)
        t = time.monotonic()
        for side, slot in order:
            cmd, env = child_command(app, side, seconds, where, start_at)
            out = stack.enter_context(tempfile.TemporaryFile())
            err = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
            children.append((slot, side, proc, out, err))
            # Before the child has started any thread (it is still starting Python):
            # every thread it makes inherits the core. One that already died is
            # reported by child_result below.
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(proc.pid, {core})
        for slot, side, proc, stdout, stderr in children:
            try:
                proc.wait(max(0.1, timeout - (time.monotonic() - t)))
            except subprocess.TimeoutExpired:
                runs[slot] = timed_out(app, side, time.monotonic() - t, timeout)
                continue
            stdout.seek(0)
            stderr.seek(0)
            runs[slot] = child_result(
                side, stdout.read().decode(errors="replace"),
                stderr.read().decode(errors="replace"), proc.returncode,
            )  # fmt: skip
    ok = all(not r.get("error") for r in runs)
    wb = _work(app, runs[1]) if ok else 0.0
    return {
        "app": app.name,
        "a": a,
        "b": b,
        "cpu": core,
        "ratio": _work(app, runs[0]) / wb if ok and wb > 0 else None,
        "late_s": max(float(r.get("late_s") or 0.0) for r in runs),
        "runs": [{k: v for k, v in r.items() if k != "timeline"} for r in runs],
    }


def _reap(children: list[tuple[int, str, subprocess.Popen[bytes], IO[bytes], IO[bytes]]]) -> None:
    for _slot, _side, proc, _out, _err in children:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_pairs(
    plan: Plan,
    where: SideEnv,
    apps: tuple[CorpusApp, ...],
    *,
    tick: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """:attr:`Plan.pair_repeats` rounds of every app's :func:`pairs_for` (the swarm
    side only with a swarm in ``where``), which child starts first alternating
    by round; the pair records of :func:`run_pair`."""
    out: list[dict[str, Any]] = []
    sides = HIVEMIND_SIDES if where.swarm_state_dir is not None else HIVEMIND_SIDES[:1]
    for r in range(plan.pair_repeats):
        for app in apps:
            if app.name in plan.skip:
                continue
            if app.whole_run and r >= (plan.whole_run_repeats or plan.pair_repeats):
                continue
            for a, b in pairs_for(app, sides):
                cap = 2 * plan.whole_run_cap_s  # each check gets half the core
                out.append(run_pair(app, a, b, plan.seconds, where, cap, b_first=r % 2 == 1))
                if tick is not None:
                    tick(f"{app.name}/{a} + {b} (same core)")
    return out
