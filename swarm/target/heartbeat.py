"""Which of the guard's samples are worth publishing.

The guard reads RSS at ``sample_hz`` (20 Hz by default) all the time. Under
pressure (level ``balanced`` or above, target still feasible) a sample is
published every :data:`BUSY_EVERY_S`: the benchmarker turns them into
pressure events, repeated at most that often per target, and the
coordinator escalates on their repeats (a level that rose is published at
once, outside this gate). Each publish costs the app ~0.3 ms of the GIL
(JSON, seal, a round trip to Redis): at 20 Hz that was 0.6 % of the TUI
app's time, for samples the benchmarker dropped. When nothing is happening (level
``conservative``) or nothing can be done (the controller says the target
is infeasible), a sample that says what the last one said is only a
heartbeat: it is published when the level or what the sample reports
changed, when RSS moved by :data:`MOVE_FRACTION` of the target (at least
:data:`MIN_MOVE_BYTES`) since the last one, but no more often than every
:data:`BUSY_EVERY_S` (live data growing past an infeasible target moves
that much at nearly every reading), and otherwise once every
:data:`CALM_EVERY_S`. Publishing is two thirds of an idle guard's CPU
(JSON, seal, a round trip to Redis); this keeps an idle or infeasible
guard under 1 % of a core.

Pure: no clock, no I/O; the runtime passes the time in.
"""

from __future__ import annotations

__all__ = ["BUSY_EVERY_S", "CALM_EVERY_S", "MIN_MOVE_BYTES", "MOVE_FRACTION", "SampleGate"]

BUSY_EVERY_S = 0.2  # under pressure: the benchmarker's repeat period (BenchmarkerCore.repeat_s)
CALM_EVERY_S = 1.0  # a calm guard's heartbeat (the benchmarker forgets a target after 10 s)
MOVE_FRACTION = 0.01  # of the target: an RSS move this large is news
MIN_MOVE_BYTES = 256 * 1024


class SampleGate:
    """Says whether a sample is due, and remembers what was last published."""

    __slots__ = ("_at", "_key", "_rss", "move_bytes")

    def __init__(self, target_bytes: int) -> None:
        self.move_bytes = max(MIN_MOVE_BYTES, int(MOVE_FRACTION * target_bytes))
        self._at = float("-inf")
        self._rss = 0
        self._key: object = None

    def due(self, now: float, rss: int, key: object, *, busy: bool) -> bool:
        """True when a sample of ``rss`` at ``now`` should be published.

        ``key`` is what else the sample reports (level, controller state,
        reclaim fields): any change to it is news. ``busy``: the target is
        under pressure and feasible, so a sample goes out every
        :data:`BUSY_EVERY_S`.
        """
        paced = now - self._at > BUSY_EVERY_S - 1e-3
        return (
            (paced and (busy or abs(rss - self._rss) >= self.move_bytes))
            or key != self._key
            or now - self._at >= CALM_EVERY_S
        )

    def sent(self, now: float, rss: int, key: object) -> None:
        """Record the sample just published."""
        self._at, self._rss, self._key = now, rss, key
