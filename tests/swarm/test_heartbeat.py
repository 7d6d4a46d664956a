"""Which samples a guard publishes (pure: :class:`SampleGate` with no clock)."""

from __future__ import annotations

import pytest

from hivemind.swarm.target.heartbeat import (
    BUSY_EVERY_S,
    CALM_EVERY_S,
    MIN_MOVE_BYTES,
    SampleGate,
)

MB = 1024 * 1024


def _gate(target_mb: float = 100) -> SampleGate:
    g = SampleGate(int(target_mb * MB))
    g.sent(10.0, 50 * MB, ("conservative", "idle"))
    return g


@pytest.mark.parametrize(
    ("now", "rss_mb", "key", "busy", "due"),
    [
        (10.05, 50, ("conservative", "idle"), False, False),  # nothing new: silent
        (10.05, 50, ("conservative", "idle"), True, False),  # under pressure: 5 Hz ...
        (10.0 + BUSY_EVERY_S, 50, ("conservative", "idle"), True, True),  # ... not 20
        (10.25, 51.1, ("conservative", "idle"), False, True),  # moved >= 1 % of the target
        (10.25, 49.0, ("conservative", "idle"), False, True),  # also downwards
        (10.05, 51.1, ("conservative", "idle"), False, False),  # ... at most 5 times a second
        (10.25, 50.5, ("conservative", "idle"), False, False),  # a small move is not news
        (10.05, 50, ("balanced", "idle"), False, True),  # the level changed
        (10.05, 50, ("conservative", "infeasible"), False, True),  # the controller's state
        (10.0 + CALM_EVERY_S, 50, ("conservative", "idle"), False, True),  # heartbeat
    ],
)
def test_gate(now: float, rss_mb: float, key: tuple[str, str], busy: bool, due: bool) -> None:
    assert _gate().due(now, int(rss_mb * MB), key, busy=busy) is due


def test_small_targets_still_need_a_real_move() -> None:
    g = SampleGate(4 * MB)  # 1 % would be 40 KB: the floor applies
    assert g.move_bytes == MIN_MOVE_BYTES
    g.sent(0.0, 2 * MB, "k")
    assert not g.due(0.3, 2 * MB + MIN_MOVE_BYTES - 1, "k", busy=False)
    assert g.due(0.3, 2 * MB + MIN_MOVE_BYTES, "k", busy=False)


def test_first_sample_is_always_due() -> None:
    assert SampleGate(100 * MB).due(0.0, 0, None, busy=False)
