"""A guarded process whose RSS crosses a threshold back and forth, for the latency bench.

Usage: python -m benchmarks.toggler SECONDS HOLD_MB PERIOD_S. It holds
HOLD_MB of touched memory for PERIOD_S, drops it for PERIOD_S, and repeats,
so its level swings between conservative and aggressive. The runtime is
attached by ``hivemind run`` (sitecustomize), not here.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    seconds, hold_mb, period = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        block = b"x" * int(hold_mb * 1024 * 1024)  # touched: it counts in RSS
        time.sleep(period)
        del block
        time.sleep(period)


if __name__ == "__main__":
    main()
