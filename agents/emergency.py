"""One call that reclaims everything this package can reclaim, now."""

from __future__ import annotations

import gc
import math
import time
from typing import Any

from hivemind.agents import gc_optimizer
from hivemind.agents.circular import CircularReferenceDetector
from hivemind.agents.memtools import MB, current_rss_bytes, malloc_trim
from hivemind.agents.pool import trim_all_pools
from hivemind.agents.render_cache import evict_all_caches
from hivemind.swarm.vocab import DEFAULT_TARGET_MB

__all__ = ["emergency_optimize"]


def emergency_optimize(target_mb: float = DEFAULT_TARGET_MB) -> dict[str, Any]:
    """Empty every pool and render cache, free unreachable cycles, trim the heap.

    Then set the GC profile that the RSS left afterwards calls for (through
    the global optimizer if one exists, so its state stays consistent).
    Live user objects are never touched. Returns the steps' results, RSS
    before and after and whether the process is now under ``target_mb``.
    Costs two or three full collections: tens of ms on a large heap.
    """
    if not (isinstance(target_mb, int | float) and target_mb > 0 and math.isfinite(target_mb)):
        raise ValueError(f"target_mb must be a finite number > 0, got {target_mb!r}")
    started = time.perf_counter()
    before = current_rss_bytes() / MB
    cache_entries = evict_all_caches()
    pool_objects = trim_all_pools(1.0)
    cycles = CircularReferenceDetector().scan()
    collected = gc.collect()
    trimmed = malloc_trim()
    after = current_rss_bytes() / MB
    opt = gc_optimizer.current_gc_optimizer()
    if opt is not None:
        opt.set_target(target_mb)
        level = opt.adapt(after)
    else:
        level = gc_optimizer.level_for(after, target_mb)
        gc_optimizer.apply_gc_profile(level)
    return {
        "target_mb": float(target_mb),
        "rss_before_mb": round(before, 2),
        "rss_after_mb": round(after, 2),
        "freed_mb": round(before - after, 2),
        "under_target": after <= target_mb,
        "cache_entries_evicted": cache_entries,
        "pool_objects_released": pool_objects,
        "cycles": cycles.as_dict(),
        "gc_collected": collected,
        "malloc_trim": trimmed,
        "gc_strategy": level,
        "duration_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }
