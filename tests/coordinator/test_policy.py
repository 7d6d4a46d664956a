"""The policy as a table of cases: no Ray, no Redis, no clock."""

from __future__ import annotations

import itertools
import time

import pytest

from hivemind.coordinator.policy import (
    LADDER,
    LearnedStat,
    PolicyConfig,
    TargetHistory,
    classify,
    decide,
    learned_key,
    record_ack,
)
from hivemind.swarm.messages import ActionKind, Level, PressureEvent

MB = 1024 * 1024
TARGET = 1000 * MB


def ev(
    level: Level, rss_mb: float, previous: Level = Level.CONSERVATIVE, **kw: object
) -> PressureEvent:
    return PressureEvent(
        target="app",
        level=level,
        previous=previous,
        rss_bytes=int(rss_mb * MB),
        target_bytes=TARGET,
        sample_ts=0.0,
        ts=0.0,
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rss_mb", "previous", "expected"),
    [
        (100, Level.CONSERVATIVE, Level.CONSERVATIVE),
        (701, Level.CONSERVATIVE, Level.BALANCED),
        (901, Level.CONSERVATIVE, Level.AGGRESSIVE),
        (1001, Level.BALANCED, Level.EMERGENCY),
        # hysteresis: coming down needs 5 % of the target below the boundary
        (690, Level.BALANCED, Level.BALANCED),
        (640, Level.BALANCED, Level.CONSERVATIVE),
        (880, Level.AGGRESSIVE, Level.AGGRESSIVE),
        (840, Level.AGGRESSIVE, Level.BALANCED),
        (990, Level.EMERGENCY, Level.EMERGENCY),
        (940, Level.EMERGENCY, Level.AGGRESSIVE),
    ],
)
def test_classify(rss_mb: float, previous: Level, expected: Level) -> None:
    assert classify(int(rss_mb * MB), TARGET, previous) is expected


def test_first_event_at_a_level_takes_rung_zero() -> None:
    d, h = decide(ev(Level.AGGRESSIVE, 950), TargetHistory(), now=10.0, session_id="s")
    assert d is not None
    assert d.actions == LADDER[Level.AGGRESSIVE][0]
    assert (h.level, h.rung, h.last_decision_ts) == (Level.AGGRESSIVE, 0, 10.0)
    assert h.last_need == 950 * MB - int(TARGET * 0.8)


def test_cooldown_holds_then_escalates_when_too_little_was_freed() -> None:
    cfg = PolicyConfig()
    d, h = decide(ev(Level.AGGRESSIVE, 950), TargetHistory(), now=10.0, session_id="s")
    assert d is not None
    d2, h2 = decide(ev(Level.AGGRESSIVE, 950), h, now=10.1, session_id="s", config=cfg)
    assert d2 is None and h2 == h  # cooldown
    h = record_ack(h, 1 * MB)  # freed 1 MB of 150 MB needed
    d3, h3 = decide(ev(Level.AGGRESSIVE, 950), h, now=11.0, session_id="s")
    assert d3 is not None and h3.rung == 1
    assert "escalating" in d3.reason
    kinds = {a.kind for a in d3.actions}
    assert {ActionKind.EVICT_CACHES, ActionKind.TRIM_POOLS, ActionKind.COLLECT} <= kinds


def test_enough_freed_repeats_the_same_rung() -> None:
    _, h = decide(ev(Level.AGGRESSIVE, 950), TargetHistory(), now=10.0, session_id="s")
    h = record_ack(h, 149 * MB)
    d, h2 = decide(ev(Level.AGGRESSIVE, 950), h, now=11.0, session_id="s")
    assert d is not None and h2.rung == 0


def test_rung_is_capped_at_the_top_of_the_ladder() -> None:
    h = TargetHistory()
    now = 0.0
    for _ in range(10):
        now += 5
        _, h = decide(ev(Level.EMERGENCY, 1100), h, now=now, session_id="s")
    assert h.rung == len(LADDER[Level.EMERGENCY]) - 1


def test_moving_up_a_level_ignores_the_cooldown() -> None:
    _, h = decide(ev(Level.BALANCED, 750), TargetHistory(), now=10.0, session_id="s")
    d, h2 = decide(ev(Level.EMERGENCY, 1050, Level.BALANCED), h, now=10.01, session_id="s")
    assert d is not None and h2.level is Level.EMERGENCY and h2.rung == 0


def test_back_to_conservative_relaxes_once() -> None:
    _, h = decide(ev(Level.BALANCED, 750), TargetHistory(), now=10.0, session_id="s")
    d, h = decide(ev(Level.CONSERVATIVE, 500, Level.BALANCED), h, now=20.0, session_id="s")
    assert d is not None
    assert [(a.kind, a.profile) for a in d.actions] == [(ActionKind.GC_PROFILE, Level.CONSERVATIVE)]
    d2, _ = decide(ev(Level.CONSERVATIVE, 500), h, now=40.0, session_id="s")
    assert d2 is None


def test_user_reclaim_actions_join_emergency() -> None:
    d, _ = decide(
        ev(Level.EMERGENCY, 1100, reclaim_actions=("drop-images",)),
        TargetHistory(),
        now=1.0,
        session_id="s",
    )
    assert d is not None
    assert any(a.kind is ActionKind.RECLAIM and a.name == "drop-images" for a in d.actions)


def test_learned_table_picks_the_cheapest_action_that_is_enough() -> None:
    rung1 = LADDER[Level.AGGRESSIVE][0] + LADDER[Level.AGGRESSIVE][1]
    learned = {}
    for a in rung1:
        if a.kind is ActionKind.GC_PROFILE:
            continue
        freed = 400 * MB if a.kind is ActionKind.EVICT_CACHES else 1 * MB
        ms = 2.0 if a.kind is ActionKind.EVICT_CACHES else 50.0
        learned[learned_key("app", a)] = LearnedStat(n=3, bytes_freed=freed, duration_ms=ms)
    h = TargetHistory(
        level=Level.AGGRESSIVE, rung=0, last_decision_ts=0.0, last_need=150 * MB, last_freed=0
    )
    d, _ = decide(ev(Level.AGGRESSIVE, 950), h, now=5.0, session_id="s", learned=learned)
    assert d is not None
    kinds = [a.kind for a in d.actions]
    assert kinds == [ActionKind.GC_PROFILE, ActionKind.EVICT_CACHES]


def test_unknown_learned_entries_mean_all_candidates() -> None:
    d, _ = decide(
        ev(Level.AGGRESSIVE, 950),
        TargetHistory(),
        now=5.0,
        session_id="s",
        learned={"other|collect:2": LearnedStat(5, 1e9, 1.0)},
    )
    assert d is not None and d.actions == LADDER[Level.AGGRESSIVE][0]


def test_policy_is_fast() -> None:
    """Not a benchmark: a generous bound that catches an accidental O(n) or I/O."""
    h = TargetHistory()
    event = ev(Level.AGGRESSIVE, 950)
    t0 = time.perf_counter()
    n = 10_000
    for i in range(n):
        _, h = decide(event, h, now=float(i), session_id="s")
        h = record_ack(h, MB)
    assert time.perf_counter() - t0 < 5.0


def test_futile_top_rung_backs_off() -> None:
    h = TargetHistory()
    now = 0.0
    times = []
    for _ in range(40):
        now += 0.05
        d, h = decide(ev(Level.EMERGENCY, 1100), h, now=now, session_id="s")
        if d is not None:
            times.append(now)
            h = record_ack(h, 0)  # frees nothing, ever
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert h.futile >= 2
    assert gaps[-1] > gaps[0] * 2, gaps


@pytest.mark.parametrize(
    ("controller", "level", "reclaim", "expected"),
    [
        ("off", Level.EMERGENCY, (), {"gc_profile", "collect", "malloc_trim"}),
        ("engaged", Level.BALANCED, (), None),  # the target collects by itself
        ("engaged", Level.EMERGENCY, (), {"evict_caches", "trim_pools"}),
        ("engaged", Level.EMERGENCY, ("drop",), {"evict_caches", "trim_pools", "reclaim"}),
        # the collector cannot help; dropping what caches, pools and reclaim actions hold can
        ("infeasible", Level.EMERGENCY, (), {"evict_caches", "trim_pools"}),
        ("infeasible", Level.EMERGENCY, ("drop",), {"evict_caches", "trim_pools", "reclaim"}),
        ("infeasible", Level.BALANCED, (), None),
    ],
)
def test_targets_with_their_own_controller_get_only_what_they_cannot_do(
    controller: str, level: Level, reclaim: tuple[str, ...], expected: set[str] | None
) -> None:
    from hivemind.swarm.messages import GuardCost

    event = ev(level, 120.0 if level is Level.EMERGENCY else 75.0, reclaim_actions=reclaim,
               cost=GuardCost(controller=controller))  # type: ignore[arg-type]  # fmt: skip
    decision, _ = decide(event, TargetHistory(), now=100.0, session_id="s")
    if expected is None:
        assert decision is None
    else:
        assert decision is not None
        kinds = {a.kind.value for a in decision.actions}
        assert expected <= kinds if controller == "off" else kinds == expected


def test_a_target_back_down_with_nothing_to_send_is_answered_at_once_on_its_next_crossing() -> None:
    """A target with its own controller drops under its target (no command: the swarm has
    nothing to send then); its next crossing is a move up, not a repeat under backoff."""
    from hivemind.swarm.messages import GuardCost

    def event(level: Level, previous: Level) -> PressureEvent:
        return ev(level, 1100 if level is Level.EMERGENCY else 100, previous=previous,
                  reclaim_actions=("drop",), cost=GuardCost(controller="engaged"))  # fmt: skip

    h, now, answered = TargetHistory(), 0.0, 0
    for _ in range(6):  # up, answered, the command frees nothing (the target already had)
        now += 0.4
        d, h = decide(event(Level.EMERGENCY, Level.CONSERVATIVE), h, now=now, session_id="s")
        if d is not None:
            answered += 1
            h = record_ack(h, 0)
        now += 0.4
        d, h = decide(event(Level.CONSERVATIVE, Level.EMERGENCY), h, now=now, session_id="s")
        assert d is None and h.level is Level.CONSERVATIVE
    assert answered == 6


@pytest.mark.parametrize(
    ("holds", "reclaim", "expected"),
    [
        (None, (), {"evict_caches", "trim_pools"}),  # not said (an older runtime): as before
        (("caches", "pools"), (), {"evict_caches", "trim_pools"}),
        (("caches",), (), {"evict_caches"}),
        (("pools",), (), {"trim_pools"}),
        ((), (), None),  # nothing there to evict or trim: no command at all
        ((), ("drop",), {"reclaim"}),  # the user's own reclaim actions still go
    ],
)
def test_caches_and_pools_are_only_reclaimed_in_targets_that_hold_them(
    holds: tuple[str, ...] | None, reclaim: tuple[str, ...], expected: set[str] | None
) -> None:
    from hivemind.swarm.messages import GuardCost

    event = ev(Level.EMERGENCY, 1100.0, reclaim_actions=reclaim, holds=holds,
               cost=GuardCost(controller="infeasible"))  # fmt: skip
    decision, _ = decide(event, TargetHistory(), now=100.0, session_id="s")
    if expected is None:
        assert decision is None
    else:
        assert decision is not None
        assert {a.kind.value for a in decision.actions} == expected


def test_a_rung_with_nothing_held_is_skipped_at_once() -> None:
    """Aggressive rung 0 only evicts caches and trims pools for a target with its own
    controller; with neither held, the first decision goes straight to the top rung's
    reclaim actions (before, a no-op command went out and they came a cooldown later)."""
    from hivemind.swarm.messages import GuardCost

    def event(previous: Level, holds: tuple[str, ...]) -> PressureEvent:
        return ev(Level.AGGRESSIVE, 950.0, previous=previous, reclaim_actions=("drop",),
                  holds=holds, cost=GuardCost(controller="engaged"))  # fmt: skip

    d, h = decide(event(Level.BALANCED, ()), TargetHistory(), now=10.0, session_id="s")
    assert d is not None and {a.kind.value for a in d.actions} == {"reclaim"}
    assert h.rung == 1 and h.decisions == 1 and "holds nothing" in d.reason
    d, _ = decide(event(Level.BALANCED, ("caches",)), TargetHistory(), now=10.0, session_id="s")
    assert d is not None and {a.kind.value for a in d.actions} == {"evict_caches"}, "rung 0"
    # Infeasible, nothing held, no reclaim action: nothing to send at any rung; counted
    # as tried (futile backoff grows), never as a decision.
    lone = ev(Level.EMERGENCY, 1100.0, previous=Level.EMERGENCY, holds=(),
              cost=GuardCost(controller="infeasible"))  # fmt: skip
    h = TargetHistory(level=Level.EMERGENCY)
    for now in (10.0, 11.0, 12.0):
        d, h = decide(lone, h, now=now, session_id="s")
        assert d is None
    assert (h.decisions, h.futile, h.last_decision_ts) == (0, 2, 12.0)
    d, h = decide(lone, h, now=12.5, session_id="s")  # the backoff: 0.2 s doubled twice
    assert d is None and h.last_decision_ts == 12.0
