"""A guarded process whose RSS crosses its target back and forth, for the latency bench.

Usage: ``python -m benchmarks.toggler SECONDS HOLD_MB PERIOD_S [LOG]``. It
builds HOLD_MB of touched memory (live data: no collection frees it) as a
list of 1 MB pieces, as an app builds a working set (not in one call that
holds the GIL for its whole length, which would also stop the guard's
sampler thread), and registers a reclaim action ``drop-block`` that drops
it; the swarm's command (or the target's own reclaim hook) runs it, and
the app stops building a block that was dropped. After each piece it reads
its own RSS (a few µs), so it records when the piece that took RSS over
90 % of the target began: that piece is "the allocation that crossed".
90 % is the ``aggressive`` level, the first at which the swarm sends a
target whose own controller is running anything (below it the target acts
alone). After PERIOD_S it drops the block itself if nobody did, records
that, waits PERIOD_S and repeats. With LOG, one line per event is appended: ``alloc BEGAN DONE
CROSSED`` (when building began and ended, and when the crossing piece
began; ``-`` if it never crossed) / ``free TS``. The runtime is attached by
``hivemind run``; without it (or its target) nothing is registered and no
crossing is recorded.
"""

from __future__ import annotations

import sys
import time

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.target.attach import current_runtime

PIECE = 1 << 20
ANSWERED_AT = 0.9  # of the target: the swarm's ``aggressive`` level (vocab.level_for)


def build(holder: list[list[bytes] | None], pieces: int, threshold: int) -> float | None:
    """Fill ``holder[0]`` with ``pieces`` touched MB; return when the piece that took RSS
    over ``threshold`` bytes began (``None``: it never did)."""
    block: list[bytes] = []
    holder[0] = block
    crossed: float | None = None
    for _ in range(pieces):
        if holder[0] is not block:  # dropped by the reclaim action: stop building it
            break
        began = time.time()
        block.append(b"x" * PIECE)  # touched: it counts in RSS
        if crossed is None and threshold and current_rss_bytes() > threshold:
            crossed = began
    return crossed


def main() -> None:
    seconds, hold_mb, period = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    log = open(sys.argv[4], "a", buffering=1) if len(sys.argv) > 4 else None  # noqa: SIM115
    holder: list[list[bytes] | None] = [None]

    def drop() -> None:
        holder[0] = None

    rt = current_runtime()
    threshold = 0
    if rt is not None:
        rt.register_reclaim("drop-block", drop)
        threshold = int(rt.target_bytes * ANSWERED_AT)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.time()
        crossed = build(holder, int(hold_mb), threshold)
        if log is not None:
            mark = f"{crossed:.6f}" if crossed is not None else "-"
            log.write(f"alloc {began:.6f} {time.time():.6f} {mark}\n")
        time.sleep(period)
        holder[0] = None
        if log is not None:
            log.write(f"free {time.time():.6f}\n")
        time.sleep(period)


if __name__ == "__main__":
    main()
