from __future__ import annotations

import gc
import itertools
import threading
import time

import pytest

from hivemind.agents.gc_optimizer import (
    GC_PROFILES,
    LEVELS,
    AggressiveGCOptimizer,
    LevelHysteresis,
    apply_gc_profile,
    emergency_gc_cleanup,
    get_gc_optimizer,
    level_for,
    level_with_hysteresis,
    optimize_gc_for_memory_target,
    start_adaptive_gc_monitoring,
    stop_adaptive_gc_monitoring,
)
from hivemind.agents.gc_stats import GCPauseRecorder


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRSS:
    def __init__(self, mb: float) -> None:
        self.mb = mb

    def __call__(self) -> float:
        return self.mb


def test_profiles_are_the_seeds_and_scale_with_the_target() -> None:
    expected = {
        "conservative": ((700, 10, 10), 30.0, 1200.0),
        "balanced": ((500, 8, 8), 15.0, 1000.0),
        "aggressive": ((300, 5, 5), 5.0, 800.0),
        "emergency": ((100, 3, 3), 1.0, 600.0),
    }
    assert tuple(GC_PROFILES) == LEVELS
    for name, (th, period, seed_mb) in expected.items():
        p = GC_PROFILES[name]
        assert p.thresholds == th and p.period_s == period
        assert p.memory_threshold_mb(1536) == pytest.approx(seed_mb)
        assert p.memory_threshold_mb(512) == pytest.approx(seed_mb / 3)
    with pytest.raises(ValueError):
        GC_PROFILES["balanced"].memory_threshold_mb(0)


def test_apply_gc_profile_sets_thresholds_only() -> None:
    before = threading.active_count()
    apply_gc_profile("emergency")
    assert gc.get_threshold() == (100, 3, 3)
    apply_gc_profile("conservative")
    assert gc.get_threshold() == (700, 10, 10)
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="unknown GC profile"):
        apply_gc_profile("turbo")


@pytest.mark.parametrize(
    ("rss", "level"),
    [
        (0, "conservative"),
        (700, "conservative"),
        (700.01, "balanced"),
        (900, "balanced"),
        (900.01, "aggressive"),
        (1000, "aggressive"),
        (1000.01, "emergency"),
        (5000, "emergency"),
    ],
)
def test_level_for_follows_the_seed_rule(rss: float, level: str) -> None:
    assert level_for(rss, 1000) == level


@pytest.mark.parametrize(("rss", "target"), [(-1, 100), (10, 0), (10, -5), (float("nan"), 100)])
def test_level_for_rejects_bad_arguments(rss: float, target: float) -> None:
    with pytest.raises(ValueError):
        level_for(rss, target)


def test_hysteresis_escalates_at_once_and_steps_down_past_the_margin() -> None:
    t = 1000.0
    assert level_with_hysteresis("conservative", 1001, t) == "emergency"
    # Just under the emergency boundary: stays emergency within the 5 % margin.
    assert level_with_hysteresis("emergency", 990, t) == "emergency"
    assert level_with_hysteresis("emergency", 949, t) == "aggressive"
    assert level_with_hysteresis("balanced", 690, t) == "balanced"
    assert level_with_hysteresis("balanced", 649, t) == "conservative"
    # Drops over two boundaries at once when far enough below.
    assert level_with_hysteresis("emergency", 100, t) == "conservative"
    with pytest.raises(ValueError):
        level_with_hysteresis("turbo", 1, t)
    with pytest.raises(ValueError):
        level_with_hysteresis("balanced", 1, t, margin=1.5)


def test_hysteresis_does_not_flap_on_a_noisy_boundary() -> None:
    clock = FakeClock()
    hyst = LevelHysteresis(1000, margin=0.05, min_dwell_s=10, clock=clock)
    raw_changes = 0
    raw = "conservative"
    for i in range(200):
        clock.now += 1.0
        rss = 700 + (15 if i % 2 else -15)  # oscillates across the 0.7 boundary
        hyst.update(rss)
        new_raw = level_for(rss, 1000)
        raw_changes += new_raw != raw
        raw = new_raw
    assert raw_changes > 150
    assert hyst.changes == 1 and hyst.level == "balanced"


def test_hysteresis_min_dwell_delays_step_down() -> None:
    clock = FakeClock()
    hyst = LevelHysteresis(1000, min_dwell_s=10, clock=clock)
    assert hyst.update(1100) == "emergency"
    clock.now += 5
    assert hyst.update(100) == "emergency"  # far below, but dwell not over
    clock.now += 5
    assert hyst.update(100) == "conservative"
    assert hyst.update(1200) == "emergency"  # escalation ignores dwell
    with pytest.raises(ValueError):
        LevelHysteresis(1000, min_dwell_s=-1)


def _optimizer(rss: FakeRSS, clock: FakeClock, **kw: float) -> AggressiveGCOptimizer:
    return AggressiveGCOptimizer(
        1000, rss_reader=rss, clock=clock, min_dwell_s=0, trim_after_collect=False, **kw
    )


def test_adapt_switches_profiles_and_collects_only_when_due_and_above_threshold() -> None:
    rss, clock = FakeRSS(100), FakeClock()
    opt = _optimizer(rss, clock)
    try:
        assert opt.adapt() == "conservative"
        assert gc.get_threshold() == (700, 10, 10)
        clock.now += 60
        opt.adapt()
        assert opt.forced_collections == 0  # conservative and far below 781 MB

        rss.mb = 1200
        assert opt.adapt() == "emergency"
        assert gc.get_threshold() == (100, 3, 3)
        assert opt.forced_collections == 1  # period long passed, above 600 MB
        opt.adapt()
        assert opt.forced_collections == 1  # emergency period is 1 s
        clock.now += 1.0
        opt.adapt()
        assert opt.forced_collections == 2

        rss.mb = 920
        assert opt.adapt() == "aggressive"
        clock.now += 4.9
        opt.adapt()
        assert opt.forced_collections == 2
        clock.now += 0.2
        opt.adapt()
        assert opt.forced_collections == 3
        assert opt.strategy_switches == 2
        report = opt.get_performance_report()
        assert report["current_strategy"] == "aggressive"
        assert report["profile_memory_threshold_mb"] == pytest.approx(800 / 1536 * 1000, 0.01)
        assert report["gc"]["collections"] >= 3
    finally:
        opt.close()
    assert opt._original_thresholds == gc.get_threshold()


def test_apply_strategy_rejects_unknown_and_close_restores() -> None:
    gc.set_threshold(650, 9, 9)
    opt = AggressiveGCOptimizer(1536)
    opt.apply_strategy("aggressive")
    assert gc.get_threshold() == (300, 5, 5)
    with pytest.raises(ValueError, match="unknown GC profile"):
        opt.apply_strategy("ludicrous")
    opt.close()
    assert gc.get_threshold() == (650, 9, 9)


@pytest.mark.parametrize("kwargs", [{"target_memory_mb": 0}, {"target_memory_mb": -1}])
def test_optimizer_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AggressiveGCOptimizer(**kwargs)
    with pytest.raises(ValueError):
        AggressiveGCOptimizer(1000, sample_interval_s=0)
    with pytest.raises(ValueError):
        optimize_gc_for_memory_target(-1.5)


def test_monitor_start_stop_idempotent_and_survives_errors() -> None:
    calls = {"n": 0}

    def flaky_rss() -> float:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise OSError("sampling failed")
        return 100.0

    opt = AggressiveGCOptimizer(1000, sample_interval_s=0.01, rss_reader=flaky_rss)
    try:
        assert opt.start_monitoring() is True
        assert opt.start_monitoring() is False
        names = [t.name for t in threading.enumerate()]
        assert names.count("hivemind-gc") == 1
        deadline = time.monotonic() + 5
        while opt._worker.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert opt._worker.errors >= 2 and opt.monitoring
        assert opt.stop_monitoring() is True
        assert opt.stop_monitoring() is False
        assert "hivemind-gc" not in [t.name for t in threading.enumerate()]
        assert opt.start_monitoring() is True  # restartable
    finally:
        opt.close()
    assert not opt.monitoring


def _make_cyclic_garbage(n: int) -> None:
    junk: list[list[object]] = [[] for _ in range(n)]
    for a, b in itertools.pairwise(junk):
        a.append(b)
        b.append(a)


def test_pause_recorder_times_collections() -> None:
    rec = GCPauseRecorder()
    with rec:
        assert rec._callback in gc.callbacks
        for _ in range(3):
            _make_cyclic_garbage(1000)
            gc.collect()
    assert rec._callback not in gc.callbacks
    snap = rec.snapshot()
    assert snap.generations[2].collections >= 3
    assert snap.collected >= 3000
    assert snap.pause_ms_total > 0 and snap.pause_ms_max >= snap.pause_ms_p50
    assert snap.collected_per_pause_ms > 0
    rec.reset()
    assert rec.snapshot().collections == 0
    with pytest.raises(ValueError):
        GCPauseRecorder(window=0)


def test_freeze_and_unfreeze() -> None:
    opt = AggressiveGCOptimizer(1536)
    try:
        assert opt.freeze() > 0
        assert gc.get_freeze_count() > 0
        opt.unfreeze()
        assert gc.get_freeze_count() == 0
    finally:
        opt.close()


def test_module_level_seed_api() -> None:
    report = optimize_gc_for_memory_target(1.5)
    assert report["target_memory_mb"] == 1536.0
    assert report["applied_strategy"] in LEVELS
    assert get_gc_optimizer() is get_gc_optimizer()
    opt = start_adaptive_gc_monitoring(sample_interval_s=0.05)
    assert opt.monitoring and start_adaptive_gc_monitoring() is opt
    assert stop_adaptive_gc_monitoring() is True
    result = emergency_gc_cleanup()
    assert result["strategy"] == "emergency"
    assert gc.get_threshold() == (100, 3, 3)
    assert {"freed_mb", "collected", "cycles", "malloc_trim"} <= set(result)


def test_pause_recorder_does_not_pin_freed_memory() -> None:
    # Regression: a recorder that kept Python floats alive per collection
    # pinned half-empty obmalloc arenas, so RSS stayed ~40 MB up after the
    # garbage below was freed.
    from hivemind.agents.memtools import MB, current_rss_bytes, malloc_trim

    gc.collect()
    malloc_trim()
    base = current_rss_bytes()
    with GCPauseRecorder():
        for _ in range(8):
            junk = [{"payload": "x" * 200, "items": [i, str(i)]} for i in range(20_000)]
            for a, b in itertools.pairwise(junk):
                a["next"] = b
                b["prev"] = a
            del junk, a, b
    gc.collect()
    malloc_trim()
    assert current_rss_bytes() - base < 12 * MB
