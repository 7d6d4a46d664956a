"""The in-target controller's vocabulary: its settings, what it observes, what it plans.

:class:`ControllerConfig` holds the bands (shares of the target), steps and
budgets; :class:`Observation` is one reading the runtime feeds it;
:class:`Plan` is what it asks the runtime to do; :class:`GCSettings` are the
collector's settings it reads and sets; :class:`ReclaimOption` is an extra
reclaim action it may choose. The controller itself, and what each field
means for it, is :mod:`hivemind.swarm.target.controller`. Plain records:
no I/O, nothing imported beyond :mod:`hivemind.swarm.record`.
"""

from __future__ import annotations

from hivemind.swarm.record import frozen

__all__ = [
    "CTL_T0_SETTING",
    "MB",
    "PRESET_T0",
    "ControllerConfig",
    "GCSettings",
    "Observation",
    "Plan",
    "ReclaimOption",
]

MB = 1024 * 1024

CTL_T0_SETTING = "ctl_t0."
"""Session setting ``setting.ctl_t0.<target>``: the gen-0 threshold that held that target
cheapest; the coordinator records it, a target (re)connecting starts from it."""

PRESET_T0 = {"conservative": 700, "balanced": 500, "aggressive": 300, "emergency": 100}
"""The report's four GC profiles as gen-0 starting points (their full thresholds live in
:mod:`hivemind.agents.gc_profiles`)."""


@frozen
class GCSettings:
    """The collector's settings: thresholds and whether it runs automatically."""

    thresholds: tuple[int, int, int]
    enabled: bool = True


@frozen
class ControllerConfig:
    """Bands (shares of the target), steps, budgets. Defaults are the tuned ones."""

    collect: float = 0.80
    tighten: float = 0.95
    relax: float = 0.70
    relax_dwell_s: float = 2.0
    tighten_every_s: float = 0.25
    relax_factor: float = 1.5
    floor_t0: int = 100
    release_t0: int = 20_000  # relaxed this far, thresholds no longer matter: release
    release_found_bytes: int = 1 * MB  # ...a disabled collector only once young collections
    # find less garbage than this (objects x object_bytes) in a relax dwell
    start_t0: int = PRESET_T0["balanced"]
    # An app that disabled its collector chose no automatic collections: young ones every
    # 500 allocations cost the batch corpus job more than the watchdog's full collections
    # (0.72-0.84 of its work, same-core pairs); engaged at 5,000, 0.99.
    start_t0_disabled: int = 5_000
    max_t1: int = 10
    max_t2: int = 10
    collect_budget: float = 0.20
    over_budget: float = 0.30
    useful_budget: float = 0.50  # collections that keep finding garbage: their cost is
    # mostly that garbage's (the app's own collector would pay it too), not overhead
    min_collect_gap_s: float = 0.05
    futile_fraction: float = 0.05  # a collection freeing less than this share of the target
    # (or of RSS, if larger)...
    futile_min_bytes: int = 1 * MB  # ...and less than this is futile
    object_bytes: int = 64  # assumed size of an unreachable object a collection found
    excess_fraction: float = 0.25  # over the target: must free this share of the excess
    infeasible_after: int = 2  # futile collections in a row over the target (beyond margin)
    presume_cost_s: float = 0.05  # ...or one, when the next would take longer than this
    infeasible_margin: float = 0.02  # share of the target: within it, RSS is "at" the target
    infeasible_budget: float = 0.01
    probe_min_s: float = 5.0
    probe_max_s: float = 60.0
    feasible_again: float = 0.95
    gc_cost_ceiling_ms: float = 150.0  # app collector ms/s above which we relax if we may
    hold_s: float = 5.0
    regrow_fraction: float = 0.01  # after a useful collection, the next waits for RSS to grow
    regrow_min_bytes: int = 256 * 1024  # ...by this share of the target, and at least this
    fail_memory_s: float = 30.0
    trial_s: float = 0.1  # engaged at least this long before the hand-over is judged by its
    # yield (and until both sides have trial_min_gc_s of collector time): a trial at the
    # preset's 500 costs an app whose garbage outlives young collections ~half its time
    young_worse: float = 0.85  # young yield under this share of the full one's: release
    verdict_s: float = 60.0  # ...and garbage does not engage again for this long
    trial_min_gc_s: float = 0.02  # collector time each side needs before a verdict
    settle_s: float = 0.01  # regrowth in the band: collect once RSS stopped rising this long
    settle_max_s: float = 0.15  # ... or after this long regardless
    settle_bytes: int = 64 * 1024  # RSS growth under this is not "rising" (page noise)
    engage_ratio: float = 2.0  # garbage engages only if the app's gen-0 is this far above ours
    min_dwell_share: float = 0.1  # far under the band the relax dwell shrinks to this share
    relax_deep: float = 3.0  # ... and the relax step grows to relax_factor ** this at most
    # A malloc_trim giving back less than this (page noise) found nothing, and cost its
    # ~5 ms: the next trim_skip collections do without, under tighten. Little is not
    # nothing: the bursty app's 0.1-0.2 MB a trim kept its peak 3 MB lower (and its work
    # 3 % higher) than skipping them did.
    trim_min_bytes: int = 64 * 1024
    trim_skip: int = 8
    # After a collection that found garbage, what survived it is frozen (gc.freeze) and the
    # next collections walk only what is new; every thaw_every-th walks everything again
    # (0 or 1: never freeze). Frozen longer than thaw_idle_s without a collection of ours
    # (pressure ended), it is given back.
    thaw_every: int = 3
    thaw_idle_s: float = 5.0
    # ... and the next one walks everything when one that skipped the frozen objects left
    # RSS above the last full walk's by more than this share of the way to the collect band
    partial_slack: float = 0.5


@frozen
class Observation:
    """One reading: monotonic time, RSS, target, the GC settings now, and the app's GC cost."""

    now: float
    rss: int
    target: int
    current: GCSettings
    gc_ms_per_s: float = 0.0
    gc_s: float = 0.0  # seconds inside the collector so far, every collection (monotone)
    gc_found: int = 0  # unreachable objects every collection so far found (monotone)
    fresh: int = -1  # objects the collector tracks made since the last full collection (an
    # upper bound from gc.get_count(): only these can have become cyclic garbage); -1: unknown


@frozen
class ReclaimOption:
    """An extra reclaim action the controller may choose: expectations, by name."""

    name: str
    expected_bytes: int
    expected_cost_ms: float


@frozen
class Plan:
    """What to do now. ``apply``: settings to set (``None``: leave them);
    ``collect``: run a full collection (of the frozen objects too if ``thaw``:
    unfreeze first), then (if ``trim``) ``malloc_trim``
    and report that with :meth:`Controller.trimmed`, then report the
    collection with :meth:`Controller.collected`; ``reclaim``: extra actions
    first."""

    apply: GCSettings | None = None
    collect: bool = False
    trim: bool = True
    reclaim: tuple[str, ...] = ()
    thaw: bool = False  # walk what an earlier collection froze too (see Controller.keep_frozen)
    reason: str = ""
