"""The seed report's in-process memory optimizers, as a library.

Pools (:mod:`~hivemind.agents.pool`), a render cache
(:mod:`~hivemind.agents.render_cache`), a widget memory manager
(:mod:`~hivemind.agents.widget_manager`), adaptive GC
(:mod:`~hivemind.agents.gc_optimizer`), a circular-reference detector
(:mod:`~hivemind.agents.circular`), a benchmarker
(:mod:`~hivemind.agents.benchmarker`) and one-call emergency reclaim
(:mod:`~hivemind.agents.emergency`). Usable alone: importing this package
needs only the standard library, ``cachetools`` and (lazily) ``psutil``;
the Ray actors live in :mod:`hivemind.agents.actors`, which is not imported
here.
"""

from __future__ import annotations

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
