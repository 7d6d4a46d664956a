"""The swarm loop's effect: one workload unguarded vs guarded by the swarm, same run.

:func:`run_effect` runs the workload in a child process both ways,
alternating which side goes first, ``repeats`` times. The guarded side runs
exactly as ``hivemind run`` would start it (the runtime attaches at
interpreter start) against a running swarm, or a temporary one this call
starts and stops. Each side reports its RSS timeline (sampled in the child
every 50 ms), peak, time over target and units of work; the guarded side
also gets every decision the coordinator took for it, what each freed, and
the reaction latency of each command.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hivemind.swarm.bench.workloads import check_workload, run_workload_process
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Ack, Decision
from hivemind.swarm.paths import default_state_dir
from hivemind.swarm.redis.bus import peek_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.state import SwarmInfo, running_swarm
from hivemind.swarm.target.launch import guarded_env

__all__ = ["EffectRun", "SwarmHandle", "run_effect", "run_guarded_side", "swarm_for"]

Side = Literal["guarded", "unguarded"]
OnDecision = Callable[[Decision], None]
OnAck = Callable[[Ack], None]


@dataclass(slots=True)
class EffectRun:
    """One side of one repeat, as ``hivemind bench`` and ``hivemind demo`` report it."""

    side: Side
    peak_rss_mb: float
    time_over_target_s: float
    units: int
    duration_s: float
    timeline: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, str, str, int]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class SwarmHandle:
    """Where the swarm is that guards the runs."""

    info: SwarmInfo
    state_dir: Path
    started_here: bool


@contextmanager
def swarm_for(state_dir: Path | None = None) -> Iterator[SwarmHandle]:
    """Use the swarm running on ``state_dir`` (default: the project's), else start one.

    A swarm started here lives in a temporary state folder and is stopped
    (with everything it started) on the way out.
    """
    from hivemind.swarm.lifecycle.detach import start_detached, stop_swarm
    from hivemind.swarm.settings import load_settings

    folder = (state_dir or default_state_dir()).resolve()
    info = running_swarm(folder)
    if info is not None and info.state == "ready":
        yield SwarmHandle(info, folder, started_here=False)
        return
    tmp = Path(tempfile.mkdtemp(prefix="hm-effect-")) / ".hivemind"
    settings = load_settings(state_dir=tmp, namespace=f"effect{uuid.uuid4().hex[:6]}")
    info = start_detached(settings)
    try:
        yield SwarmHandle(info, tmp, started_here=True)
    finally:
        stop_swarm(tmp)


class _Listener:
    """Collects the coordinator's decisions and the target's acks for one target name."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        target: str,
        on_decision: OnDecision | None,
        on_ack: OnAck | None,
    ) -> None:
        self._client = connect(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(
            keys.decisions("gc_optimizer"), keys.decisions("widget_optimizer"), keys.acks
        )
        self.target = target
        self.decisions: dict[str, Decision] = {}
        self.acks: list[Ack] = []
        self._on_decision = on_decision
        self._on_ack = on_ack
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hm-effect-listen", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            raw = self._pubsub.get_message(timeout=0.2)
            if raw is None:
                continue
            try:
                msg = peek_message(raw["data"])  # an observer: acts on nothing
            except ValueError:
                continue
            if isinstance(msg, Decision) and msg.target == self.target:
                self.decisions[msg.id] = msg
                if self._on_decision:
                    self._on_decision(msg)
            elif isinstance(msg, Ack) and msg.target == self.target:
                self.acks.append(msg)
                if self._on_ack:
                    self._on_ack(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()
        self._client.close()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}


def run_guarded_side(
    workload: str,
    target_mb: float,
    seconds: float,
    swarm: SwarmHandle,
    *,
    on_decision: OnDecision | None = None,
    on_ack: OnAck | None = None,
) -> EffectRun:
    """Run ``workload`` guarded by ``swarm``; callbacks see its decisions and acks live."""
    name = f"effect-{uuid.uuid4().hex[:8]}"
    env = guarded_env(target_mb=target_mb, name=name, state_dir=swarm.state_dir, base=_clean_env())
    listener = _Listener(
        swarm.info.redis_url, Keys(swarm.info.namespace), name, on_decision, on_ack
    )
    try:
        run = run_workload_process(workload, seconds, target_mb, "none", side="guarded", env=env)
        time.sleep(0.3)  # the last ack may still be on the wire
    finally:
        listener.close()
    decisions = []
    for ack in listener.acks:
        d = listener.decisions.get(ack.decision_id)
        actions = "+".join(r.kind.value for r in ack.results)
        level = d.level.value if d is not None else "?"
        decisions.append(
            (round(ack.applied_ts - run.started_at, 3), level, actions, ack.bytes_freed)
        )
    return EffectRun(
        side="guarded",
        peak_rss_mb=run.peak_rss_mb,
        time_over_target_s=run.time_over_target_s,
        units=run.units,
        duration_s=run.duration_s,
        timeline=run.timeline,
        decisions=decisions,
        latencies_ms=[
            (a.applied_ts - a.sample_ts) * 1000 for a in listener.acks if a.sample_ts > 0
        ],
        error=run.error,
    )


def run_unguarded_side(workload: str, target_mb: float, seconds: float) -> EffectRun:
    """Run ``workload`` with no guard at all (the baseline)."""
    run = run_workload_process(
        workload, seconds, target_mb, "none", side="unguarded", env=_clean_env()
    )
    return EffectRun(
        side="unguarded",
        peak_rss_mb=run.peak_rss_mb,
        time_over_target_s=run.time_over_target_s,
        units=run.units,
        duration_s=run.duration_s,
        timeline=run.timeline,
        error=run.error,
    )


def run_effect(
    workload: str,
    target_mb: float,
    duration_s: float,
    repeats: int,
    *,
    state_dir: Path | None = None,
) -> list[EffectRun]:
    """Both sides ``repeats`` times, alternating which goes first; see the module doc."""
    check_workload(workload)  # a bad spec fails before any swarm starts
    runs: list[EffectRun] = []
    with swarm_for(state_dir) as swarm:
        for r in range(repeats):
            order: list[Side] = ["unguarded", "guarded"] if r % 2 == 0 else ["guarded", "unguarded"]
            for side in order:
                if side == "guarded":
                    runs.append(run_guarded_side(workload, target_mb, duration_s, swarm))
                else:
                    runs.append(run_unguarded_side(workload, target_mb, duration_s))
    return runs
