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

    def step(
        self,
        now: float,
        rss_mb: float,
        *,
        gc_ms: float = 0.0,
        freed_mb: float = 0.0,
        collect_s: float = 0.01,
        objects: int = 0,
    ) -> Plan:
        rss = int(rss_mb * MB)
        plan = self.ctl.step(Observation(now, rss, TARGET, self.current, gc_ms))
        if plan.apply is not None:
            self.current = plan.apply
        if plan.collect:
            after = rss - int(freed_mb * MB)
            self.ctl.collected(now, rss - after, collect_s, after, TARGET, objects)
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


CASES = [
    Case("idle below the collect band", DEFAULT, [50.0] * 20, None, True, 0),
    Case("paced collections first: app thresholds untouched", TUI, [80.0, 86.0, 87.0], None,
         True),
    Case("still rising at 95 %: take over gen-0 at the balanced preset", TUI,
         [86.0, 95.5, 95.6], 500, True),
    Case("a disabled collector is enabled while guarded", DISABLED, [86.0, 95.5, 95.6], 500,
         True),
    Case("an app below the preset is halved", GCSettings((300, 10, 10)), [96.0, 96.5], 150,
         True),
    Case("rising over 95 % halves gen-0 (once per 250 ms)", DEFAULT,
         [95.5, 95.6, 95.7, 95.8, 95.9, 96.0], 250, True),
    Case("halving stops at the floor", DEFAULT, [95.0 + i * 0.01 for i in range(1, 200)], 100,
         True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_thresholds_table(case: Case) -> None:
    w = World(case.app)
    for i, rss in enumerate(case.rss):
        w.step(i * 0.05, rss)
    if case.expect_t0 is None:
        assert w.current == case.app
    else:
        assert w.current.thresholds[0] == case.expect_t0
        older = case.app.thresholds[1:] if case.app.enabled else (10, 10)
        assert w.current.thresholds[1:] == older, "gen-1/2 stay the app's"
    assert w.current.enabled is case.expect_enabled
    if case.expect_collections is not None:
        assert w.ctl.collections == case.expect_collections


@pytest.mark.parametrize(
    ("collect_s", "freed_mb", "min_gap_s"),
    [
        (0.010, 20.0, 0.05),  # useful: next one after duration / 20 %
        (0.100, 20.0, 0.5),
        (0.010, 0.0, 0.1),  # futile (under the target): budget halves
    ],
)
def test_full_collections_are_paced_by_their_own_cost(
    collect_s: float, freed_mb: float, min_gap_s: float
) -> None:
    w = World(DEFAULT)
    times = []
    t = 0.0
    while t < 6.0:
        if w.step(t, 92.0, freed_mb=freed_mb, collect_s=collect_s).collect:
            times.append(t)
        t += 0.05
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times and gaps, times
    assert min(gaps) >= min_gap_s - 1e-9


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
    assert len(collects) == 2
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


def test_freed_objects_count_for_pacing_but_not_against_infeasibility() -> None:
    """Collected objects often stay in the allocator's pools (RSS flat) yet are reused."""
    w = World(TUI)
    t, n = 0.0, 0
    while t < 2.0:
        n += w.step(t, 88.0, freed_mb=0.0, collect_s=0.01, objects=100_000).collect
        t += 0.05
    assert n >= 10, "useful by objects: the budget stays at 10 %"
    assert not w.ctl.infeasible, "under the target: never infeasible"
    w2 = World(TUI)
    t = 0.0
    while t < 2.0:
        w2.step(t, 130.0, freed_mb=0.0, collect_s=0.01, objects=100_000)
        t += 0.05
    assert w2.ctl.infeasible, "over the target with RSS flat: live data is over"


def test_a_probe_that_frees_memory_resumes_control() -> None:
    w = World(DEFAULT)
    t = 0.0
    while not w.ctl.infeasible:
        w.step(t, 120.0, freed_mb=0.0, collect_s=0.001)
        t += 0.05
    while not w.step(t, 120.0, freed_mb=30.0, collect_s=0.001).collect:
        t += 0.05
    assert not w.ctl.infeasible


def test_relaxes_step_by_step_and_gives_back_the_apps_own_settings() -> None:
    for app in (DEFAULT, DISABLED, TUI):
        w = World(app)
        w.step(0.0, 96.0)
        assert w.ctl.engaged
        seen = []
        t = 0.05
        while w.ctl.engaged and t < 120:
            w.step(t, 40.0)
            seen.append(w.current.thresholds[0])
            t += 0.05
        assert w.current == app, app
        steps = sorted(set(seen))
        assert len(steps) >= 2, "one step at a time, not straight back"
        assert t >= 2.0, "after the dwell"


def test_does_not_relax_straight_back_to_a_setting_that_failed() -> None:
    w = World(TUI)
    w.step(0.0, 96.0)  # engage at 500
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
    w = World(TUI)
    w.step(0.0, 96.0)
    t = 0.05
    while t < 10:
        w.step(t, 80.0)  # in the band: hold
        t += 0.05
    assert w.current.thresholds[0] == 500
    assert w.ctl.held_t0 == 500
    restored = World(TUI, Controller(learned_t0=2000))
    restored.step(0.0, 96.0)
    assert restored.current.thresholds[0] == 2000, "starts where the session learned it holds"


def test_app_changing_its_settings_while_engaged_is_what_it_gets_back() -> None:
    w = World(DEFAULT)
    w.step(0.0, 96.0)
    w.current = GCSettings((5000, 50, 50), False)  # the app calls set_threshold + disable
    plan = w.step(0.05, 80.0)
    assert plan.apply is not None and plan.apply.thresholds[0] == 500 and plan.apply.enabled
    t = 0.1
    while w.ctl.engaged and t < 120:
        w.step(t, 30.0)
        t += 0.05
    assert w.current == GCSettings((5000, 50, 50), False)


def test_high_gc_cost_with_headroom_relaxes() -> None:
    w = World(TUI)
    w.step(0.0, 96.0)
    w.step(0.3, 97.0)  # tightened to 250
    t = 0.35
    while t < 3.0:
        w.step(t, 78.0, gc_ms=400.0)  # 40 % of the time in the collector, 22 % headroom
        t += 0.05
    assert w.current.thresholds[0] > 250


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
    ctl = Controller(ControllerConfig(tighten=0.5, start_t0=300))
    w = World(DEFAULT, ctl)
    w.step(0.0, 55.0)
    assert w.current.thresholds[0] == 300
    ctl.preset("emergency")
    assert ctl.config.start_t0 == 100


def test_frequent_useful_collections_hand_young_garbage_to_the_collector() -> None:
    """A disabled collector and garbage coming fast: gen-0 is cheaper than full collections."""
    w = World(DISABLED)
    t = 0.0
    while t < 2.0 and not w.ctl.engaged:
        w.step(t, 82.0, freed_mb=20.0, collect_s=0.005)
        t += 0.05
    assert w.ctl.engaged and w.current.enabled and w.current.thresholds[0] == 500


def test_a_big_heap_over_target_freeing_a_sliver_is_infeasible() -> None:
    """mypy-like: 80 MB over the target, each collection frees 5 MB of garbage."""
    w = World(DEFAULT)
    t = 0.0
    while t < 5.0 and not w.ctl.infeasible:
        w.step(t, 180.0, freed_mb=5.0, collect_s=0.2)
        t += 0.05
    assert w.ctl.infeasible and t < 5.0, "flagged within 5 s"
