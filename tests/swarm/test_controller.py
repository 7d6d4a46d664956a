"""The in-target controller as pure, table-driven cases: no Ray, no Redis, no clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from hivemind.swarm.target.controller import (
    Controller,
    ControllerConfig,
    GCSettings,
    Observation,
    Plan,
    ReclaimOption,
)

MB = 1024 * 1024
TARGET = 100 * MB
DEFAULT = GCSettings((700, 10, 10), True)
TUI = GCSettings((50000, 20, 20), True)
DISABLED = GCSettings((700, 10, 10), False)


class World:
    """Plays the runtime: applies plans to a fake collector state, reports collections."""

    def __init__(self, app: GCSettings, ctl: Controller | None = None) -> None:
        self.current = app
        self.ctl = ctl or Controller()
        self.plans: list[Plan] = []
        self.gc_s, self.gc_found = 0.0, 0  # every collection's time and finds, so far
        self.frozen = False  # what the runtime's Freezer would hold
        self.partials: list[bool] = []  # per collection: did it skip frozen objects?

    def step(
        self,
        now: float,
        rss_mb: float,
        *,
        gc_ms: float = 0.0,
        freed_mb: float = 0.0,
        collect_s: float = 0.01,
        objects: int = 0,
        app_gc: tuple[float, int] = (0.0, 0),
        trim_mb: float = 0.0,
        fresh: int = -1,
        partial_objects: int | None = None,
    ) -> Plan:
        """One sample; ``app_gc``: the app's own collections since the last one
        (seconds, objects found), counted before this sample is observed;
        ``trim_mb``: what a ``malloc_trim`` the plan asks for gives back; ``fresh``:
        objects made since the last full collection (-1: unknown);
        ``partial_objects``: what a collection finds while objects are frozen (default
        ``objects``). Freezing is played as the runtime does it."""
        rss = int(rss_mb * MB)
        self.gc_s, self.gc_found = self.gc_s + app_gc[0], self.gc_found + app_gc[1]
        obs = Observation(now, rss, TARGET, self.current, gc_ms, self.gc_s, self.gc_found, fresh)
        plan = self.ctl.step(obs)
        if plan.apply is not None:
            self.current = plan.apply
        if self.frozen and not self.ctl.keep_frozen(now):
            self.frozen = False
        if plan.collect:
            partial = self.frozen and not plan.thaw
            if partial and partial_objects is not None:
                objects = partial_objects
            after = rss - int(freed_mb * MB)
            if plan.trim:
                self.ctl.trimmed(int(trim_mb * MB))
            self.ctl.collected(now, rss - after, collect_s, after, TARGET, objects, partial)
            self.frozen = self.ctl.keep_frozen(now)
            self.partials.append(partial)
            self.gc_s, self.gc_found = self.gc_s + collect_s, self.gc_found + objects
        self.plans.append(plan)
        return plan


@dataclass(frozen=True)
class Case:
    name: str
    app: GCSettings
    rss: list[float]  # one reading per 50 ms
    expect_t0: int | None  # gen-0 threshold in force at the end (None: the app's own)
    expect_enabled: bool
    expect_collections: int | None = None
    objects: int = 0  # what each collection finds
    collect_s: float = 0.01


G = 100_000  # unreachable objects a collection finds: garbage (6.4 MB at 64 B each)

CASES = [
    Case("idle below the collect band", DEFAULT, [50.0] * 20, None, True, 0),
    Case("paced collections first: app thresholds untouched", TUI, [80.0, 86.0, 87.0], None,
         True),
    Case("collections find garbage but cannot keep up: gen-0 at the balanced preset", TUI,
         [86.0, 95.5, 95.6], 500, True, objects=G, collect_s=0.05),
    Case("a collection that found cyclic garbage engages the collector at once", TUI,
         [85.0, 85.5], 500, True, objects=G, collect_s=0.01),
    Case("... also when that collection took RSS under the band", TUI, [85.0, 60.0], 500,
         True, objects=G, collect_s=0.01),
    Case("an RSS drop without cyclic garbage (a trim) engages nothing", TUI,
         [85.0, 85.5, 86.0], None, True, objects=10, collect_s=0.01),
    Case("collections find nothing (live data grows): thresholds untouched", TUI,
         [86.0, 95.5, 97.0, 98.5, 99.5], None, True, collect_s=0.05),
    Case("a disabled collector is enabled while guarded", DISABLED, [86.0, 95.5, 95.6], 5000,
         True, objects=G, collect_s=0.05),
    Case("an app below the preset is halved", GCSettings((300, 10, 10)), [96.0, 97.5], 150,
         True, objects=G, collect_s=0.05),
    Case("rising over 95 % halves gen-0 (once per 250 ms)", DEFAULT,
         [95.5 + 1.5 * i for i in range(7)], 250, True, objects=G, collect_s=0.1),
    Case("halving stops at the floor", DEFAULT, [95.0 + i * 1.1 for i in range(1, 22)], 100,
         True, objects=G, collect_s=0.1),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_thresholds_table(case: Case) -> None:
    w = World(case.app)
    for i, rss in enumerate(case.rss):
        w.step(i * 0.05, rss, objects=case.objects, collect_s=case.collect_s)
    if case.expect_t0 is None:
        assert w.current == case.app
    else:
        assert w.current.thresholds[0] == case.expect_t0
        app_older = tuple(min(t, 10) for t in case.app.thresholds[1:])
        older = app_older if case.app.enabled else (10, 10)
        assert w.current.thresholds[1:] == older, "gen-1/2: the app's, at most 10"
    assert w.current.enabled is case.expect_enabled
    if case.expect_collections is not None:
        assert w.ctl.collections == case.expect_collections


@pytest.mark.parametrize(
    ("collect_s", "freed_mb", "min_gap_s"),
    [
        (0.010, 20.0, 0.05),  # useful: next one after duration / 50 %, at least 50 ms
        (0.100, 20.0, 0.2),
        (0.010, 0.0, 0.1),  # futile (under the target): budget halves
    ],
)
def test_full_collections_are_paced_by_their_own_cost(
    collect_s: float, freed_mb: float, min_gap_s: float
) -> None:
    w = World(DEFAULT)
    times = []
    t, rss = 0.0, 85.0
    while t < 6.0:  # RSS climbs 1.5 MB a step: a collection is always wanted
        if w.step(t, rss, freed_mb=freed_mb, collect_s=collect_s).collect:
            times.append(t)
            rss -= freed_mb
        t, rss = t + 0.05, min(rss + 1.5, 99.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times and gaps, times
    assert min(gaps) >= min_gap_s - 1e-9


def test_due_at_tells_when_the_pacing_lets_the_next_collection_run() -> None:
    w = World(DEFAULT)
    assert w.ctl.due_at(int(90 * MB), TARGET) <= 0.0, "no collection yet: now"
    assert w.step(1.0, 90.0, freed_mb=0.0, collect_s=0.1).collect  # futile, under target
    # 20 % budget, halved once: a 0.1 s collection waits 1 s
    assert w.ctl.due_at(int(90 * MB), TARGET) == pytest.approx(2.0)
    assert not w.step(1.9, 90.0).collect
    assert w.step(2.0, 90.0, collect_s=0.1).collect


def test_infeasible_within_seconds_then_probes_rarely_and_resumes() -> None:
    w = World(DISABLED)
    t = 0.0
    collects = []
    while t < 5.0:
        if w.step(t, 130.0, freed_mb=0.1, collect_s=0.2).collect:
            collects.append(t)
        t += 0.05
    assert w.ctl.infeasible and w.ctl.state() == "infeasible"
    assert 29 * MB <= w.ctl.live_over_bytes <= 31 * MB
    assert w.current == DISABLED, "the app's own (disabled) collector is back"
    assert len(collects) == 1, "one futile collection over the target says it"
    # while infeasible: probes at most every max(5 s, 100 x duration)
    while t < 65.0:
        if w.step(t, 130.0, freed_mb=0.1, collect_s=0.2).collect:
            collects.append(t)
        t += 0.05
    probes = [c for c in collects if c >= 5.0]
    assert 1 <= len(probes) <= 3, probes
    assert all(b - a >= 20.0 - 1e-9 for a, b in itertools.pairwise(collects[1:]))
    # live data shrank: RSS under 95 % of the target is feasible again, at once
    w.step(t, 90.0)
    assert not w.ctl.infeasible and w.ctl.live_over_bytes == 0


def test_cheap_futile_collections_halve_their_budget_once_only() -> None:
    """Bursty: 10 ms collections mid-burst find the working set live; a moment later it
    is garbage. They stay at 10 % of the time (one halving), not 20 % / 2**n."""
    w = World(DEFAULT)
    times = [t * 0.05 for t in range(80) if w.step(t * 0.05, 88.0, collect_s=0.01).collect]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    assert gaps and max(gaps) <= 0.15 + 1e-9, gaps  # 0.1 s, on a 50 ms grid
    slow = World(DEFAULT)  # 100 ms ones: a big heap, each futile one halves again
    times = [t * 0.05 for t in range(200) if slow.step(t * 0.05, 88.0, collect_s=0.1).collect]
    assert [round(b - a, 2) for a, b in itertools.pairwise(times)][:3] == [1.0, 2.0, 4.0]


def test_after_a_useful_collection_the_next_waits_for_rss_to_grow_again() -> None:
    """Found objects stay in the allocator's pools (RSS flat) and the app reuses them:
    collecting again before RSS grows would cost the app and free nothing."""
    w = World(TUI)
    t, n = 0.0, 0
    while t < 2.0:
        n += w.step(t, 88.0, objects=G).collect
        t += 0.05
    assert n == 1, "RSS flat after a useful collection: no second one"
    while t < 2.2:
        n += w.step(t, 89.5, objects=G).collect
        t += 0.05
    assert n == 2, "RSS grew by more than 1 % of the target: collect again at once"
    assert not w.ctl.infeasible, "under the target: never infeasible"


def test_found_garbage_counts_against_infeasibility_in_proportion_to_the_excess() -> None:
    near = World(TUI)  # 1 MB over, each collection finds 6.4 MB of garbage: feasible
    over = World(TUI)  # 30 MB over, 6.4 MB found: under a quarter of the excess
    t = 0.0
    while t < 4.0:
        near.step(t, 101.0 + t, objects=G)
        over.step(t, 130.0 + t, objects=G)
        t += 0.05
    assert not near.ctl.infeasible
    assert over.ctl.infeasible, "over the target, freeing a sliver: live data is over"


def test_cheap_futile_collections_are_repeated_for_evidence_before_flagging() -> None:
    """Bursty-like: a 5 ms collection mid-burst finds the working set still live."""
    w = World(DEFAULT)
    w.step(0.0, 110.0, objects=0, collect_s=0.005)
    assert not w.ctl.infeasible, "one cheap futile collection proves little"
    t = 0.05
    while not w.step(t, 110.0, objects=G, collect_s=0.005).collect:
        t += 0.05
    assert not w.ctl.infeasible, "the next found the garbage"


def test_rss_back_in_the_band_after_leaving_it_is_answered_at_once() -> None:
    """Pacing is for pressure that stays: a crossing from below is reacted to now."""
    w = World(DEFAULT)
    assert w.step(0.0, 85.0, freed_mb=20.0, objects=G, collect_s=0.5).collect  # next in 1 s
    assert not w.step(0.05, 86.0).collect, "still in the band: paced"
    w.step(0.1, 60.0)  # the garbage is gone, RSS under the band
    assert w.step(0.15, 85.0, objects=G).collect, "back in the band: fresh pressure"


def _after_a_useful_collection_in_the_band() -> World:
    """RSS stays in the band after a useful collection (the freed memory stays in the
    allocator's pools, for the next burst to reuse): 84 MB, regrowth from 85 MB."""
    w = World(DEFAULT)
    assert w.step(0.0, 85.0, freed_mb=1.0, objects=G, collect_s=0.01).collect
    return w


def test_regrowth_in_the_band_waits_for_the_working_set_to_stop_growing() -> None:
    """A burst still being built is live: collecting it now walks it for nothing."""
    w = _after_a_useful_collection_in_the_band()
    growing = [(0.100, 85.5), (0.105, 86.5), (0.110, 87.5)]
    assert not any(w.step(t, mb).collect for t, mb in growing), "still growing: wait"
    assert not w.step(0.115, 87.5).collect, "flat for one check only"
    assert w.step(0.125, 87.5).collect, "flat for settle_s: the burst is done"


def test_regrowth_that_goes_on_is_collected_after_the_longest_wait() -> None:
    w = _after_a_useful_collection_in_the_band()
    t, mb, first = 0.1, 85.5, None
    while first is None and t < 1.0:
        if w.step(t, mb).collect:
            first = t
        t, mb = t + 0.005, mb + 0.1  # never stops growing, never reaches 95 %
    assert first is not None and 0.1 + 0.15 - 1e-9 <= first <= 0.1 + 0.15 + 0.006


def test_regrowth_reaching_the_targets_edge_is_collected_at_once() -> None:
    w = _after_a_useful_collection_in_the_band()
    assert not w.step(0.100, 86.0).collect
    assert w.step(0.105, 96.0).collect, "at 96 %: no waiting for the growth to stop"


def test_a_collection_that_did_not_run_is_retried_and_judges_nothing() -> None:
    ctl = Controller()
    plan = ctl.step(Observation(0.0, 130 * MB, TARGET, DEFAULT))
    assert plan.collect
    ctl.skipped(0.0)  # one was already under way in another thread
    assert not ctl.infeasible and ctl.collections == 0
    assert ctl.step(Observation(0.05, 130 * MB, TARGET, DEFAULT)).collect


def test_live_data_crossing_the_target_after_a_futile_collection_is_flagged_at_once() -> None:
    """mypy-like: a collection at 80 % found no garbage; RSS then climbs past the
    target. Another collection would walk a bigger heap for nothing: flag, don't collect."""
    w = World(DISABLED)
    t, rss, collects = 0.0, 80.0, 0
    while t < 3.0:
        collects += w.step(t, rss, objects=1_000, collect_s=0.1).collect
        t, rss = t + 0.05, rss + 2.0
    assert collects == 1
    assert w.ctl.infeasible and w.ctl.live_over_bytes > 0
    assert w.current == DISABLED


def _cheap_live_growth(fresh: int) -> tuple[World, int]:
    """Live bytes growing 1 MB a sample from 80 MB to 110 MB; each collection takes 5 ms
    and finds nothing; ``fresh`` objects are made between samples (-1: unknown)."""
    w = World(DEFAULT)
    collects = sum(
        w.step(i * 0.05, 80.0 + i, collect_s=0.005, fresh=fresh).collect for i in range(31)
    )
    return w, collects


def test_nothing_new_to_find_after_a_futile_collection_is_not_collected_again() -> None:
    """A heap of bytes growing: the collection at 80 % found no garbage, and too few
    objects were made since to hold any. The next ones would walk the same live heap
    for nothing; over the target that is live data, said without collecting."""
    w, collects = _cheap_live_growth(fresh=100)
    assert collects == 2, "at 80 and 85 MB; the next would wait for 20 MB more"
    assert w.ctl.infeasible and w.ctl.live_over_bytes > 0
    unknown, n_unknown = _cheap_live_growth(fresh=-1)
    assert n_unknown > 2, "without the count, cheap futile ones run for evidence"
    assert unknown.ctl.infeasible
    _, n_made = _cheap_live_growth(fresh=1_000_000)  # 64 MB of objects: may be garbage
    assert n_made > 2


def test_a_few_objects_holding_megabytes_are_collected_once_rss_grew_enough() -> None:
    """A caught exception's frames holding a buffer: a cycle of a handful of objects.
    The count says nothing new; RSS grown by a futile collection's worth says look."""
    w = World(DEFAULT)
    assert w.step(0.0, 80.0, collect_s=0.005, fresh=10).collect  # nothing to find yet
    t, rss, at = 0.05, 81.0, []
    while t < 1.0:
        if w.step(t, rss, collect_s=0.005, fresh=10, freed_mb=4.0, objects=10).collect:
            at.append(rss)
            rss -= 4.0
        t, rss = t + 0.05, rss + 1.0
    assert at and at[0] == 85.0, at
    assert not w.ctl.infeasible


def test_a_crossing_from_under_the_band_is_fresh_pressure_though_nothing_new_was_made() -> None:
    """A batch job: its collection at the crossing found its work live; it then dropped
    it and collected itself (the count starts again). Its next crossing is answered at
    once, not after RSS stops rising (the in-target reaction bench: p99 217 ms)."""
    w = World(DISABLED)
    assert w.step(0.0, 86.0, collect_s=0.005, fresh=10).collect  # all of it live: futile
    assert not w.step(0.05, 87.0, fresh=10).collect, "still rising, nothing new"
    w.step(0.10, 60.0, fresh=10)  # dropped and collected by the job itself
    assert w.step(0.15, 80.5, fresh=10).collect, "back in the band: at once"


def test_a_working_set_that_stopped_growing_is_collected_though_nothing_new_was_made() -> None:
    """Bursty: the collection mid-build found the graph live (and moved it to the oldest
    generation, where the count of new objects no longer sees it). Once RSS stops
    rising the app may have dropped it: collect, whatever the count says."""
    w = World(DEFAULT)
    assert w.step(0.0, 85.0, collect_s=0.005, fresh=10).collect  # mid-build: futile
    assert not w.step(0.05, 87.0, fresh=10).collect, "still rising: nothing new"
    assert not w.step(0.10, 87.0, fresh=10).collect, "flat for 50 ms only"
    t = 0.15
    while t < 0.5 and not w.step(t, 87.0, fresh=10, objects=G).collect:
        t += 0.05
    assert t <= 0.25, t
    assert not w.ctl.infeasible


def test_probes_are_paced_by_what_a_bigger_heap_will_cost() -> None:
    """After a 100 ms collection at 110 MB, with RSS at 202 MB a probe is expected to take
    100 x 202 / 110 = 184 ms: at 1 % of the time, it waits 18.4 s (not the 5 s minimum)."""
    w = World(DEFAULT)
    w.step(0.0, 110.0, objects=0, collect_s=0.1)  # futile over the target...
    w.step(0.05, 110.0)  # ... and the next would take 100 ms: flagged without it
    assert w.ctl.infeasible
    t, probes = 0.1, []
    while t < 30.0:
        if w.step(t, 202.0, collect_s=0.2).collect:
            probes.append(t)
        t += 0.05
    assert probes and probes[0] >= 18.3, probes


def test_a_probe_that_frees_memory_resumes_control() -> None:
    w = World(DEFAULT)
    t = 0.0
    while not w.ctl.infeasible:
        w.step(t, 120.0, freed_mb=0.0, collect_s=0.001)
        t += 0.05
    while not w.step(t, 120.0, freed_mb=30.0, collect_s=0.001).collect:
        t += 0.05
    assert not w.ctl.infeasible


def _engaged(app: GCSettings, ctl: Controller | None = None) -> World:
    """A world whose controller took over gen-0 at t = 0.05 s: a collection found
    garbage, RSS grew on past 95 %, where the next collection runs at once although
    its budget says not yet (finding garbage again)."""
    w = World(app, ctl)
    w.step(0.0, 86.0, objects=G, collect_s=1.0)
    assert w.step(0.05, 96.0, objects=G, collect_s=1.0).collect
    assert w.ctl.engaged
    return w


def test_relaxes_step_by_step_and_gives_back_the_apps_own_settings() -> None:
    for app in (DEFAULT, DISABLED, TUI):
        w = _engaged(app)
        seen = []
        t = 0.05
        while w.ctl.engaged and t < 120:
            w.step(t, 40.0)
            seen.append(w.current.thresholds[0])
            t += 0.05
        assert w.current == app, app
        steps = sorted(set(seen))
        assert len(steps) >= 2, "one step at a time, not straight back"
        assert t >= 2.0 * 0.40 / 0.70, "after the dwell (at 40 % of the target, 4/7 of it)"
        for _ in range(40):  # released: no garbage found since, so it stays released
            t += 0.05
            w.step(t, 40.0)
        assert not w.ctl.engaged and w.current == app


def _relaxed_by(rss_mb: float, seconds: float) -> int:
    w = _engaged(DISABLED, Controller(ControllerConfig(start_t0_disabled=500)))
    t = 0.1
    while t < seconds:
        w.step(t, rss_mb)
        t += 0.05
    return w.current.thresholds[0] if w.ctl.engaged else 1 << 30


def test_deep_headroom_relaxes_faster_than_shallow() -> None:
    near = _relaxed_by(65.0, 4.0)  # just under the relax band: the whole 2 s dwell
    deep = _relaxed_by(5.0, 4.0)  # 5 % of the target: a tenth of it
    assert 500 < near <= 1200, near
    assert deep > 5 * near, (deep, near)


def test_default_thresholds_are_not_taken_over_for_garbage_alone() -> None:
    # The app's own young collections already run near the preset (700 against 500):
    # a collection finding garbage engages nothing ...
    w = World(DEFAULT)
    w.step(0.0, 85.0, objects=G, collect_s=0.01)
    w.step(0.05, 85.5, objects=G, collect_s=0.01)
    assert not w.ctl.engaged and w.current == DEFAULT
    # ... but a session that learned a far tighter setting starts from it
    w = World(DEFAULT, Controller(learned_t0=200))
    w.step(0.0, 85.0, objects=G, collect_s=0.01)
    w.step(0.05, 85.5, objects=G, collect_s=0.01)
    assert w.ctl.engaged and w.current.thresholds[0] == 200


def test_a_disabled_collector_comes_back_once_young_collections_stop_finding_garbage() -> None:
    """A gc.disable() job still making cycles: handing its collector back would let them
    pile up to the next full collection of the whole heap."""
    w = _engaged(DISABLED)
    t = 0.1
    while t < 30:  # young collections find ~2.5 MB of garbage a second
        w.step(t, 20.0, app_gc=(0.001, 2000))
        t += 0.05
    assert w.ctl.engaged and w.current.thresholds[0] == 20_000, "relaxed to the cap, held"
    while t < 40:  # the job stopped making garbage
        w.step(t, 20.0)
        t += 0.05
    assert not w.ctl.engaged and w.current == DISABLED


def test_does_not_relax_straight_back_to_a_setting_that_failed() -> None:
    w = _engaged(TUI)  # at 500
    w.step(0.3, 97.0)  # still rising: 500 failed, now 250
    assert w.current.thresholds[0] == 250
    t = 0.35
    top = 0
    while t < 20:  # headroom back: relax, but stay under 500 for fail_memory_s
        w.step(t, 60.0)
        top = max(top, w.current.thresholds[0])
        t += 0.05
    assert 250 < top < 500


def test_settles_and_learns_the_cheapest_setting_that_held() -> None:
    w = _engaged(TUI)
    t = 0.1
    while t < 10:
        w.step(t, 80.0)  # in the band: hold
        t += 0.05
    assert w.current.thresholds[0] == 500
    assert w.ctl.held_t0 == 500
    restored = _engaged(TUI, Controller(learned_t0=2000))
    assert restored.current.thresholds[0] == 2000, "starts where the session learned it holds"


def test_app_changing_its_settings_while_engaged_is_what_it_gets_back() -> None:
    w = _engaged(DEFAULT)
    w.current = GCSettings((5000, 50, 50), False)  # the app calls set_threshold + disable
    plan = w.step(0.1, 80.0)
    assert plan.apply is not None and plan.apply.thresholds[0] == 500 and plan.apply.enabled
    t = 0.1
    while w.ctl.engaged and t < 120:
        w.step(t, 30.0)
        t += 0.05
    assert w.current == GCSettings((5000, 50, 50), False)


def test_high_gc_cost_with_headroom_relaxes() -> None:
    w = _engaged(TUI)
    w.step(0.3, 97.0)  # tightened to 250
    t = 0.35
    while t < 3.0:
        w.step(t, 78.0, gc_ms=400.0)  # 40 % of the time in the collector, 22 % headroom
        t += 0.05
    assert w.current.thresholds[0] > 250


def test_a_costly_setting_with_headroom_relaxes_by_big_steps_after_a_short_dwell() -> None:
    """Young collections holding the target with room to spare, at 40 % of the app's time:
    each relax waits the shortest dwell (0.2 s) and multiplies gen-0 by 1.5 ** 3; at a
    modest cost the same headroom waits the dwell of its depth (2 s x 60/70)."""
    seen = {}
    for gc_ms in (400.0, 50.0):
        w = _engaged(TUI)  # at 500
        t, steps = 0.1, [500]
        while t < 1.0:
            w.step(t, 60.0, gc_ms=gc_ms)
            if w.current.thresholds[0] != steps[-1] and w.ctl.engaged:
                steps.append(w.current.thresholds[0])
            t += 0.05
        seen[gc_ms] = steps
    assert seen[400.0][:3] == [500, 1688, 5698], seen  # 500 * 3.375 + 1, and again
    assert seen[50.0] == [500], seen


def test_extra_reclaim_actions_cheaper_than_a_collection_go_first() -> None:
    ctl = Controller()
    w = World(DEFAULT, ctl)
    ctl.set_reclaim_options(
        [
            ReclaimOption("image-cache", 30 * MB, 1.0),
            ReclaimOption("slow-index", 30 * MB, 500.0),
            ReclaimOption("empty", 0, 0.1),
        ]
    )
    first = w.step(0.0, 95.0, freed_mb=10.0, collect_s=0.05)  # no cost known yet: all useful
    assert first.collect and "image-cache" in first.reclaim and "empty" not in first.reclaim
    ctl.reclaimed("image-cache", 30 * MB, 1.0)
    t = 0.05
    while True:
        plan = w.step(t, 95.0, freed_mb=10.0, collect_s=0.05)
        if plan.collect:
            break
        t += 0.05
    assert plan.reclaim == ("image-cache",), "the 500 ms one costs more than a 50 ms collection"


def test_config_is_overridable() -> None:
    ctl = Controller(ControllerConfig(collect=0.4, tighten=0.5, start_t0=300))
    w = World(DEFAULT, ctl)
    w.step(0.0, 45.0, objects=G, collect_s=1.0)
    w.step(0.05, 55.0)
    assert w.current.thresholds[0] == 300
    ctl.preset("emergency")
    assert ctl.config.start_t0 == 100


def test_garbage_faster_than_paced_collections_hands_gen0_to_the_collector() -> None:
    """A disabled collector, garbage coming faster than 200 ms collections may run."""
    w = World(DISABLED)
    t, rss = 0.0, 82.0
    while t < 2.0 and not w.ctl.engaged:
        w.step(t, rss, objects=G, collect_s=0.2)
        t, rss = t + 0.05, rss + 1.0
    # A job that chose no automatic collections is engaged at 5,000, not the preset's 500.
    assert w.ctl.engaged and w.current.enabled and w.current.thresholds[0] == 5000


def test_live_data_growing_never_tightens_thresholds() -> None:
    """mypy-like: collections find nothing while RSS climbs; gen-0 would only cost."""
    w = World(DISABLED)
    t, rss = 0.0, 82.0
    while t < 3.0:
        w.step(t, rss, objects=500, collect_s=0.2)
        t, rss = t + 0.05, rss + 0.5
    assert not w.ctl.engaged and w.current == DISABLED


def test_a_big_heap_over_target_freeing_a_sliver_is_infeasible() -> None:
    """mypy-like: 80 MB over the target, each collection frees 5 MB of garbage."""
    w = World(DEFAULT)
    t = 0.0
    while t < 5.0 and not w.ctl.infeasible:
        w.step(t, 180.0, freed_mb=5.0, collect_s=0.2)
        t += 0.05
    assert w.ctl.infeasible and t < 5.0, "flagged within 5 s"


def test_a_cache_found_while_infeasible_is_tried_at_once_if_it_could_matter() -> None:
    """30 MB over: a new 1 MB cache waits for the next probe, a 20 MB one goes now."""
    w = World(DEFAULT)
    w.step(0.0, 130.0, collect_s=0.2)
    w.step(0.05, 130.0)  # the next would take 200 ms: flagged without it
    assert w.ctl.infeasible
    w.ctl.set_reclaim_options([ReclaimOption("small", 1 * MB, 1.0)])
    assert not w.step(0.1, 130.0).collect, "too small to make it feasible"
    w.ctl.set_reclaim_options(
        [ReclaimOption("small", 1 * MB, 1.0), ReclaimOption("memo", 20 * MB, 1.0)]
    )
    plan = w.step(0.15, 130.0, freed_mb=25.0)
    assert plan.collect and "memo" in plan.reclaim
    assert not w.ctl.infeasible, "it freed most of the excess: control resumes"


def _hand_over_trial(young_per_ms: int) -> tuple[World, float]:
    """TUI-like: the first full collection (60 ms) finds G objects, gen-0 is taken
    over, then young collections find garbage at ``young_per_ms`` objects/ms (the
    full one: G / 60 = 1,667) for 1.5 s. Returns the world and the time reached."""
    w = World(TUI)
    assert w.step(0.0, 85.0, objects=G, collect_s=0.06).collect
    t = 0.05
    w.step(t, 60.0)
    assert w.ctl.engaged, "garbage found: gen-0 handed to the collector"
    while t < 1.6:
        t += 0.05
        w.step(t, 60.0, app_gc=(0.005, 5 * young_per_ms))
    return w, t


def test_young_collections_finding_garbage_dearer_than_full_ones_give_the_settings_back() -> None:
    """Garbage kept a while (a screen kept for "undo") is walked again and again by
    young collections: 1,000 objects/ms against the full collection's 1,667."""
    w, t = _hand_over_trial(young_per_ms=1000)
    assert not w.ctl.engaged and w.current == TUI
    assert any("young collections found 1000 objects/ms, full ones 1667" in p.reason
               for p in w.plans)  # fmt: skip
    # For the verdict's time, garbage found by full collections does not engage again...
    t += 0.05
    assert w.step(t, 90.0, objects=G, collect_s=0.06).collect  # RSS grew again
    # ... near the target a full collection runs at once, whatever its budget (the
    # next is due 120 ms after a useful 60 ms one) ...
    t += 0.05
    assert w.ctl.due_at(96 * MB, TARGET) > t
    assert w.step(t, 96.0, objects=G, collect_s=0.06).collect
    for _ in range(10):
        t += 0.05
        w.step(t, 82.0)
    assert not w.ctl.engaged  # ... and neither engaged gen-0


def test_a_trim_that_gives_nothing_back_is_left_out_of_the_next_collections() -> None:
    """malloc_trim costs ~5 ms whatever it finds; on a heap of small objects it finds
    nothing. Skipped for 8 collections after a useless one, then tried again; always
    tried at the target's edge; kept while it gives anything back (0.1 MB here)."""
    w = World(DEFAULT)
    trims: list[bool] = []
    t = 0.0
    for _ in range(10):  # every 0.5 s RSS is back at 85 %, a useful collection each time
        plan = w.step(t, 85.0, objects=G, collect_s=0.01, freed_mb=10.0, trim_mb=0.0)
        assert plan.collect
        trims.append(plan.trim)
        t += 0.5
    assert trims == [True] + [False] * 8 + [True]
    edge = w.step(t, 96.0, objects=G, collect_s=0.01, freed_mb=10.0, trim_mb=0.0)
    assert edge.collect and edge.trim, "at 95 % every means is tried"
    useful = World(DEFAULT)
    got = [useful.step(i * 0.5, 85.0, objects=G, freed_mb=10.0, trim_mb=0.1) for i in range(4)]
    assert all(p.collect and p.trim for p in got)
    # One trim that finds nothing among useful ones is not a verdict: they vary.
    mixed = World(DEFAULT)
    gives = [0.4, 0.01, 0.2, 0.0, 0.3]
    got = [mixed.step(i * 0.5, 85.0, objects=G, freed_mb=10.0, trim_mb=g)
           for i, g in enumerate(gives)]  # fmt: skip
    assert all(p.collect and p.trim for p in got)


def test_the_hand_over_is_judged_as_soon_as_both_sides_have_evidence() -> None:
    """The trial is costly when young collections lose (the TUI app spent about half its
    time in the collector at 500): judged once both regimes have trial_min_gc_s of
    collector time, 20 ms here, after 4 steps of 5 ms, not after a fixed second."""
    w = World(TUI)
    assert w.step(0.0, 85.0, objects=G, collect_s=0.06).collect
    w.step(0.05, 60.0)
    assert w.ctl.engaged
    t = 0.05
    while w.ctl.engaged and t < 1.0:
        t += 0.05
        w.step(t, 60.0, app_gc=(0.005, 5 * 1000))
    assert not w.ctl.engaged and t == pytest.approx(0.25), t


def test_young_collections_finding_garbage_cheaper_keep_gen0() -> None:
    """A batch job's young cycles: 3,000 objects/ms against the full one's 1,667."""
    w, _ = _hand_over_trial(young_per_ms=3000)
    assert w.ctl.engaged and w.current.thresholds[0] == 500


def test_after_the_verdict_expires_garbage_engages_again() -> None:
    cfg = ControllerConfig(verdict_s=3.0)
    w = World(TUI, Controller(cfg))
    assert w.step(0.0, 85.0, objects=G, collect_s=0.06).collect
    t = 0.05
    while t < 1.6:
        t += 0.05
        w.step(t, 60.0, app_gc=(0.005, 5 * 1000))
    assert not w.ctl.engaged
    t = 5.0
    assert w.step(t, 90.0, objects=G, collect_s=0.06).collect
    w.step(t + 0.05, 60.0)
    assert w.ctl.engaged, "a new trial"


def test_at_the_targets_edge_a_collection_that_finds_garbage_is_not_held_by_its_budget() -> None:
    w = World(DEFAULT)
    assert w.step(0.0, 86.0, objects=G, collect_s=0.2).collect
    assert w.ctl.due_at(96 * MB, TARGET) == pytest.approx(0.4), "200 ms at 50 %"
    assert w.step(0.05, 96.0, objects=G, collect_s=0.2).collect, "at 96 %: now"
    futile = World(DEFAULT)
    assert futile.step(0.0, 86.0, collect_s=0.2).collect  # found nothing
    assert not futile.step(0.05, 96.0).collect, "a futile one keeps its pacing"


def _collections_finding_garbage(w: World, n: int, **kw: object) -> float:
    """Run the world through ``n`` collections that each free 6 MB and find garbage;
    the time reached."""
    t, rss = 0.0, 86.0
    while len(w.partials) < n and t < 60.0:
        if w.step(t, rss, objects=G, freed_mb=6.0, collect_s=0.01, **kw).collect:  # type: ignore[arg-type]
            rss -= 6.0
        t, rss = t + 0.05, rss + 1.0
    return t


def test_collections_that_find_garbage_freeze_and_every_third_walks_everything() -> None:
    """After a collection that found garbage, what survived it is frozen: the next two
    skip it, the third walks everything (TUI: widget trees beside a long-lived heap)."""
    w = World(TUI)
    _collections_finding_garbage(w, 7)
    assert w.partials == [False, True, True, False, True, True, False]
    assert w.frozen


def test_freezing_off_walks_everything_every_time() -> None:
    w = World(TUI, Controller(ControllerConfig(thaw_every=0)))
    _collections_finding_garbage(w, 4)
    assert w.partials == [False] * 4
    assert not w.frozen


def test_a_partial_collection_that_finds_nothing_is_no_verdict() -> None:
    """A collection that skipped the frozen objects found nothing: the garbage may be
    among them. It is not counted futile; the next one walks everything, paced as after
    a useful one (not held back as after a futile one), and judges."""
    w = World(TUI)
    assert w.step(0.0, 86.0, objects=G, freed_mb=6.0).collect
    assert w.frozen
    t, at = 0.05, []
    while len(w.partials) < 3 and t < 5.0:
        if w.step(t, 90.0, objects=G, partial_objects=0, freed_mb=0.0, collect_s=0.05).collect:
            at.append(t)
            assert w.ctl._s.futile == 0
        t += 0.05
    assert w.partials == [False, True, False]
    assert at[1] - at[0] <= 0.11, "a full walk at once: 50 ms at 50 %, not 250 ms at 20 %"
    assert w.frozen, "the full walk found garbage: frozen again"


def test_verdicts_come_from_full_walks_only() -> None:
    """A partial miss, then a full walk that also finds nothing: that one is futile,
    nothing stays frozen, and the collections that flag live data over the target
    walked everything."""
    w = World(TUI)
    assert w.step(0.0, 86.0, objects=G, freed_mb=6.0).collect
    t = 0.05
    while len(w.partials) < 3 and t < 5.0:
        w.step(t, 90.0, objects=0, freed_mb=0.0)
        t += 0.05
    assert w.partials == [False, True, False]
    assert not w.frozen, "a futile collection keeps nothing frozen"
    while not w.ctl.infeasible and t < 10.0:
        w.step(t, 104.0, objects=0, freed_mb=0.0)
        t += 0.05
    assert w.ctl.infeasible
    assert w.partials.count(True) == 1


def test_frozen_objects_are_given_back_when_pressure_ends() -> None:
    w = World(TUI)
    assert w.step(0.0, 86.0, objects=G, freed_mb=20.0).collect
    assert w.frozen and w.ctl.keep_frozen(1.0)
    t = 0.05
    while t < 6.0:
        w.step(t, 66.0)
        t += 0.05
    assert not w.frozen
    assert not w.ctl.keep_frozen(t)


@pytest.mark.parametrize(("freed_mb", "next_partial"), [(20.0, True), (6.0, False)])
def test_a_partial_collection_that_left_rss_high_is_followed_by_a_full_walk(
    freed_mb: float, next_partial: bool
) -> None:
    """Garbage kept a while, then dropped (a TUI's "undo" screens), is among the frozen
    objects: a partial collection leaving RSS well above what the last full walk left
    (here 66 MB; more than half way to the 80 MB band) has the next walk everything."""
    w = World(TUI)
    assert w.step(0.0, 86.0, objects=G, freed_mb=20.0).collect  # a full walk: 66 MB left
    t = 0.05
    while len(w.partials) < 3 and t < 10.0:
        w.step(t, 86.0, objects=G, freed_mb=freed_mb)
        t += 0.05
    assert w.partials == [False, True, next_partial]
