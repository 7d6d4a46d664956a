"""The seed report's in-process memory optimizers, as a library.

Pools (:mod:`~hivemind.agents.pool`), a render cache
(:mod:`~hivemind.agents.render_cache`), a widget memory manager
(:mod:`~hivemind.agents.widget_manager`), adaptive GC
(:mod:`~hivemind.agents.gc_optimizer`), a circular-reference detector
(:mod:`~hivemind.agents.circular`), a benchmarker
(:mod:`~hivemind.agents.benchmarker`) and one-call emergency reclaim
(:mod:`~hivemind.agents.emergency`). Usable alone: importing this package
needs only the standard library, and each name imports its module on first use
(``cachetools``, ``psutil`` and asyncio only where needed);
the Ray actors live in :mod:`hivemind.agents.actors.facades`, which is not imported
here.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

    from hivemind.agents.benchmarker import (
        HiveMindMemoryBenchmarker,
        Hotspot,
        MemorySnapshot,
        StressResult,
        run_hive_mind_memory_benchmark,
    )
    from hivemind.agents.circular import CircularReferenceDetector, CycleReport
    from hivemind.agents.emergency import emergency_optimize
    from hivemind.agents.gc_optimizer import (
        GC_PROFILES,
        LEVELS,
        AggressiveGCOptimizer,
        CollectResult,
        GCProfile,
        LevelHysteresis,
        apply_gc_profile,
        current_gc_optimizer,
        emergency_gc_cleanup,
        get_gc_optimizer,
        get_performance_report,
        level_for,
        level_with_hysteresis,
        optimize_gc_for_memory_target,
        start_adaptive_gc_monitoring,
        stop_adaptive_gc_monitoring,
    )
    from hivemind.agents.gc_stats import GCPauseRecorder, GCStatsSnapshot
    from hivemind.agents.memtools import current_rss_bytes, current_rss_mb, malloc_trim
    from hivemind.agents.periodic import PeriodicWorker
    from hivemind.agents.pool import (
        ObjectPool,
        PoolableWidgetProperties,
        PoolableWidgetState,
        PoolStats,
        create_pool,
        get_pool,
        remove_pool,
        trim_all_pools,
    )
    from hivemind.agents.render_cache import CacheStats, RenderCache, evict_all_caches
    from hivemind.agents.widget_manager import (
        ManagedWidget,
        WidgetMemoryManager,
        emergency_widget_cleanup,
        generate_memory_report,
        get_widget_memory_manager,
        optimize_widget_memory,
    )

_LAZY: dict[str, str] = {
    "AggressiveGCOptimizer": "hivemind.agents.gc_optimizer",
    "CacheStats": "hivemind.agents.render_cache",
    "CircularReferenceDetector": "hivemind.agents.circular",
    "CollectResult": "hivemind.agents.gc_optimizer",
    "CycleReport": "hivemind.agents.circular",
    "GCPauseRecorder": "hivemind.agents.gc_stats",
    "GCProfile": "hivemind.agents.gc_optimizer",
    "GCStatsSnapshot": "hivemind.agents.gc_stats",
    "GC_PROFILES": "hivemind.agents.gc_optimizer",
    "HiveMindMemoryBenchmarker": "hivemind.agents.benchmarker",
    "Hotspot": "hivemind.agents.benchmarker",
    "LEVELS": "hivemind.agents.gc_optimizer",
    "LevelHysteresis": "hivemind.agents.gc_optimizer",
    "ManagedWidget": "hivemind.agents.widget_manager",
    "MemorySnapshot": "hivemind.agents.benchmarker",
    "ObjectPool": "hivemind.agents.pool",
    "PeriodicWorker": "hivemind.agents.periodic",
    "PoolStats": "hivemind.agents.pool",
    "PoolableWidgetProperties": "hivemind.agents.pool",
    "PoolableWidgetState": "hivemind.agents.pool",
    "RenderCache": "hivemind.agents.render_cache",
    "StressResult": "hivemind.agents.benchmarker",
    "WidgetMemoryManager": "hivemind.agents.widget_manager",
    "apply_gc_profile": "hivemind.agents.gc_optimizer",
    "create_pool": "hivemind.agents.pool",
    "current_gc_optimizer": "hivemind.agents.gc_optimizer",
    "current_rss_bytes": "hivemind.agents.memtools",
    "current_rss_mb": "hivemind.agents.memtools",
    "emergency_gc_cleanup": "hivemind.agents.gc_optimizer",
    "emergency_optimize": "hivemind.agents.emergency",
    "emergency_widget_cleanup": "hivemind.agents.widget_manager",
    "evict_all_caches": "hivemind.agents.render_cache",
    "generate_memory_report": "hivemind.agents.widget_manager",
    "get_gc_optimizer": "hivemind.agents.gc_optimizer",
    "get_performance_report": "hivemind.agents.gc_optimizer",
    "get_pool": "hivemind.agents.pool",
    "get_widget_memory_manager": "hivemind.agents.widget_manager",
    "level_for": "hivemind.agents.gc_optimizer",
    "level_with_hysteresis": "hivemind.agents.gc_optimizer",
    "malloc_trim": "hivemind.agents.memtools",
    "optimize_gc_for_memory_target": "hivemind.agents.gc_optimizer",
    "optimize_widget_memory": "hivemind.agents.widget_manager",
    "remove_pool": "hivemind.agents.pool",
    "run_hive_mind_memory_benchmark": "hivemind.agents.benchmarker",
    "start_adaptive_gc_monitoring": "hivemind.agents.gc_optimizer",
    "stop_adaptive_gc_monitoring": "hivemind.agents.gc_optimizer",
    "trim_all_pools": "hivemind.agents.pool",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562).

    ``import hivemind.agents`` stays cheap: the guarded-process runtime uses
    two of these modules, and the benchmarker alone pulls in asyncio and
    tracemalloc.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "GC_PROFILES",
    "LEVELS",
    "AggressiveGCOptimizer",
    "CacheStats",
    "CircularReferenceDetector",
    "CollectResult",
    "CycleReport",
    "GCPauseRecorder",
    "GCProfile",
    "GCStatsSnapshot",
    "HiveMindMemoryBenchmarker",
    "Hotspot",
    "LevelHysteresis",
    "ManagedWidget",
    "MemorySnapshot",
    "ObjectPool",
    "PeriodicWorker",
    "PoolStats",
    "PoolableWidgetProperties",
    "PoolableWidgetState",
    "RenderCache",
    "StressResult",
    "WidgetMemoryManager",
    "apply_gc_profile",
    "create_pool",
    "current_gc_optimizer",
    "current_rss_bytes",
    "current_rss_mb",
    "emergency_gc_cleanup",
    "emergency_optimize",
    "emergency_widget_cleanup",
    "evict_all_caches",
    "generate_memory_report",
    "get_gc_optimizer",
    "get_performance_report",
    "get_pool",
    "get_widget_memory_manager",
    "level_for",
    "level_with_hysteresis",
    "malloc_trim",
    "optimize_gc_for_memory_target",
    "optimize_widget_memory",
    "remove_pool",
    "run_hive_mind_memory_benchmark",
    "start_adaptive_gc_monitoring",
    "stop_adaptive_gc_monitoring",
    "trim_all_pools",
]
