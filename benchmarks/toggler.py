"""A guarded process whose RSS crosses its target back and forth, for the latency bench.

Usage: ``python -m benchmarks.toggler SECONDS HOLD_MB PERIOD_S [LOG]``. It
allocates HOLD_MB of touched memory (live data: no collection frees it),
records the wall-clock time the allocation began (that allocation is what
crossed the target; the guard may see the crossing, and the swarm answer
it, before the allocation has finished, so its end would hide the fastest
answers and pair the target with a later command) and registers a reclaim
action ``drop-block`` that drops it; the swarm's command (or the target's own reclaim hook) runs
it. After PERIOD_S it drops the block itself if nobody did, records that,
waits PERIOD_S and repeats. With LOG, one line per event is appended:
``alloc TS DONE_TS`` (when the allocation began and ended) / ``free TS``.
The runtime is attached by ``hivemind run``.
"""

from __future__ import annotations

import sys
import time

from hivemind.swarm.target.runtime import current_runtime


def main() -> None:
    seconds, hold_mb, period = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    log = open(sys.argv[4], "a", buffering=1) if len(sys.argv) > 4 else None  # noqa: SIM115
    holder: list[bytes | None] = [None]

    def drop() -> None:
        holder[0] = None

    rt = current_runtime()
    if rt is not None:
        rt.register_reclaim("drop-block", drop)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.time()
        holder[0] = b"x" * int(hold_mb * 1024 * 1024)  # touched: it counts in RSS
        if log is not None:
            log.write(f"alloc {began:.6f} {time.time():.6f}\n")  # began, done
        time.sleep(period)
        holder[0] = None
        if log is not None:
            log.write(f"free {time.time():.6f}\n")
        time.sleep(period)


if __name__ == "__main__":
    main()
