"""A guarded-process stand-in that leaks into a render cache until the swarm reclaims it.

Usage: python leaky_app.py SECONDS MB_PER_SECOND. Prints one JSON line:
peak RSS, units of work, and whether a runtime was attached.
"""

from __future__ import annotations

import json
import sys
import time

from hivemind.agents.memtools import current_rss_bytes
from hivemind.agents.render_cache import RenderCache
from hivemind.swarm.target.attach import current_runtime


def main() -> None:
    seconds, rate = float(sys.argv[1]), float(sys.argv[2])
    cache: RenderCache[int, str] = RenderCache(max_size=100_000, ttl_seconds=3600)
    chunk = 256 * 1024
    per_tick = max(1, int(rate * 1024 * 1024 / chunk / 50))
    peak = current_rss_bytes()
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(per_tick):
            cache.set(n, str(n % 10) * chunk)
            n += 1
        peak = max(peak, current_rss_bytes())
        time.sleep(0.02)
    print(
        json.dumps({"peak_mb": peak / 2**20, "units": n, "guarded": current_runtime() is not None})
    )


if __name__ == "__main__":
    main()
