"""Adaptive garbage collection: the seed report's four GC profiles.

Profiles (thresholds, period, memory threshold) are the seed's, written for
a 1.5 GB (1536 MB) target:

============  ============  ========  ======================  =================
profile       thresholds    period    seed memory threshold   fraction of target
============  ============  ========  ======================  =================
conservative  (700,10,10)   30 s      1200 MB                 0.781
balanced      (500, 8, 8)   15 s      1000 MB                 0.651
aggressive    (300, 5, 5)    5 s       800 MB                 0.521
emergency     (100, 3, 3)    1 s       600 MB                 0.391
============  ============  ========  ======================  =================

**What the memory threshold means.** The report does not say. Here it is
the *memory-pressure threshold of the profile's periodic full collection*:
while a profile is active, the adaptive monitor forces ``gc.collect()``
every ``period_s`` seconds, but only while RSS is above the threshold. The
threshold is kept as a fraction of the target (``seed_mb / 1536``), so a
512 MB target gives conservative 400 MB, emergency 200 MB. With the seed's
switching rule this means: conservative (RSS < 70 % of target) never forces
a collection unless hysteresis holds it above 78 %; balanced, aggressive and
emergency always do, every 15, 5 and 1 s.

**Switching.** :func:`level_for` is the seed's rule (``> target``
emergency, ``> 0.9`` aggressive, ``> 0.7`` balanced, else conservative).
:func:`level_with_hysteresis` adds a margin on the way down so a process
sitting on a boundary does not flap: escalation is immediate, de-escalation
only once RSS is ``margin`` (default 5 % of the target) below the boundary,
and :class:`LevelHysteresis` adds a minimum dwell time.

Note that CPython 3.11's default thresholds *are* (700, 10, 10): the
conservative profile changes nothing but the periodic collection.
The seed's "emergency enables debug mode" is not reproduced: GC debug flags
print to stderr inside the host application.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivemind.agents.circular import CircularReferenceDetector, CycleReport
from hivemind.agents.gc_profiles import (
    DEFAULT_TARGET_MB,
    GC_PROFILES,
    LEVELS,
    GCProfile,
    LevelHysteresis,
    apply_gc_profile,
    check_target,
    get_profile,
    level_for,
    level_with_hysteresis,
)
from hivemind.agents.gc_stats import GCPauseRecorder
from hivemind.agents.memtools import MB, current_rss_bytes, malloc_trim
from hivemind.agents.periodic import PeriodicWorker

__all__ = [
    "DEFAULT_TARGET_MB",
    "GC_PROFILES",
    "LEVELS",
    "AggressiveGCOptimizer",
    "CollectResult",
    "GCProfile",
    "LevelHysteresis",
    "apply_gc_profile",
    "current_gc_optimizer",
    "emergency_gc_cleanup",
    "get_gc_optimizer",
    "get_performance_report",
    "level_for",
    "level_with_hysteresis",
    "optimize_gc_for_memory_target",
    "start_adaptive_gc_monitoring",
    "stop_adaptive_gc_monitoring",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What one forced collection did."""

    generation: int
    collected: int
    pause_ms: float
    rss_before_mb: float
    rss_after_mb: float
    trimmed: bool

    @property
    def freed_mb(self) -> float:
        """RSS drop across the collection (negative if RSS grew meanwhile)."""
        return self.rss_before_mb - self.rss_after_mb


class AggressiveGCOptimizer:
    """Switch GC profiles with memory pressure and force collections when due.

    Construction changes nothing in the interpreter. ``apply_strategy``
    sets thresholds; ``adapt()`` runs one monitor step (sample RSS, pick a
    level with hysteresis, collect if the profile's period has passed and
    RSS is above its threshold); ``start_monitoring()`` runs ``adapt()`` on a
    daemon thread every ``sample_interval_s``. ``close()`` stops the thread,
    removes the GC callback and restores the thresholds found at
    construction.
    """

    def __init__(
        self,
        target_memory_mb: float = DEFAULT_TARGET_MB,
        *,
        sample_interval_s: float = 1.0,
        hysteresis_margin: float = 0.05,
        min_dwell_s: float = 10.0,
        trim_after_collect: bool = True,
        rss_reader: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_target(target_memory_mb)
        if not sample_interval_s > 0:
            raise ValueError(f"sample_interval_s must be > 0, got {sample_interval_s!r}")
        self.target_memory_mb = float(target_memory_mb)
        self.sample_interval_s = float(sample_interval_s)
        self.trim_after_collect = trim_after_collect
        self._rss_reader = rss_reader or (lambda: current_rss_bytes() / MB)
        self._clock = clock
        self._lock = threading.RLock()
        self._original_thresholds: tuple[int, int, int] = gc.get_threshold()
        self._hysteresis = LevelHysteresis(
            target_memory_mb, margin=hysteresis_margin, min_dwell_s=min_dwell_s, clock=clock
        )
        self.current_strategy: str | None = None
        self.strategy_switches = 0
        self.history: list[tuple[float, str, float]] = []
        self._last_collect_at = clock()
        self.forced_collections = 0
        self.last_collect: CollectResult | None = None
        self.frozen_objects = 0
        self.pauses = GCPauseRecorder()
        self.pauses.install()
        self.cycles = CircularReferenceDetector()
        self._worker = PeriodicWorker(self._tick, self.sample_interval_s, name="hivemind-gc")

    # -- strategy --------------------------------------------------------

    def set_target(self, target_memory_mb: float) -> None:
        """Change the target; thresholds scale with it from the next step."""
        check_target(target_memory_mb)
        with self._lock:
            self.target_memory_mb = float(target_memory_mb)
            self._hysteresis.target_mb = float(target_memory_mb)

    def set_sample_interval(self, seconds: float) -> None:
        """Change the monitor's sampling interval (takes effect after the next sample)."""
        if not seconds > 0:
            raise ValueError(f"sample_interval_s must be > 0, got {seconds!r}")
        self.sample_interval_s = float(seconds)
        self._worker.interval_s = float(seconds)

    def apply_strategy(self, name: str, *, rss_mb: float | None = None) -> GCProfile:
        """Switch to profile ``name`` (sets thresholds); returns the profile.

        Raises ValueError for an unknown name.
        """
        profile = get_profile(name)
        with self._lock:
            gc.set_threshold(*profile.thresholds)
            if self.current_strategy != name:
                if self.current_strategy is not None:
                    self.strategy_switches += 1
                self.current_strategy = name
                self._hysteresis.level = name
                rss = self._rss_reader() if rss_mb is None else rss_mb
                self.history.append((time.time(), name, rss))
                del self.history[:-256]  # bounded: the monitor runs for days
        return profile

    @property
    def profile(self) -> GCProfile:
        """The active profile (conservative before any strategy was applied)."""
        return GC_PROFILES[self.current_strategy or "conservative"]

    def adapt(self, rss_mb: float | None = None) -> str:
        """One monitor step; returns the level now in force.

        Costs one RSS read (~15 µs) unless a collection is due.
        """
        with self._lock:
            rss = self._rss_reader() if rss_mb is None else rss_mb
            level = self._hysteresis.update(rss)
            if level != self.current_strategy:
                log.info("GC strategy %s -> %s at %.0f MB", self.current_strategy, level, rss)
                self.apply_strategy(level, rss_mb=rss)
            profile = GC_PROFILES[level]
            due = self._clock() - self._last_collect_at >= profile.period_s
            if due and rss > profile.memory_threshold_mb(self.target_memory_mb):
                self.collect(rss_before_mb=rss)
            return level

    def _tick(self) -> float | None:
        self.adapt()
        return None

    # -- actions ---------------------------------------------------------

    def collect(self, generation: int = 2, *, rss_before_mb: float | None = None) -> CollectResult:
        """Run ``gc.collect(generation)`` (then ``malloc_trim`` if enabled)."""
        if generation not in (0, 1, 2):
            raise ValueError(f"generation must be 0, 1 or 2, got {generation!r}")
        before = self._rss_reader() if rss_before_mb is None else rss_before_mb
        started = time.perf_counter()
        collected = gc.collect(generation)
        trimmed = malloc_trim() if self.trim_after_collect and generation == 2 else False
        pause_ms = (time.perf_counter() - started) * 1000.0
        result = CollectResult(generation, collected, pause_ms, before, self._rss_reader(), trimmed)
        with self._lock:
            self._last_collect_at = self._clock()
            self.forced_collections += 1
            self.last_collect = result
        return result

    def detect_circular_references(self) -> CycleReport:
        """Find and free unreachable cycles (see :mod:`hivemind.agents.circular`)."""
        return self.cycles.scan()

    def freeze(self) -> int:
        """Collect, then move every surviving object to the permanent generation.

        Helps after start-up: long-lived objects are no longer scanned by
        full collections (shorter pauses), and a forked child does not
        touch their pages. Cost: cycles among frozen objects are never
        collected until :meth:`unfreeze`. Returns the objects frozen.
        """
        gc.collect()
        gc.freeze()
        self.frozen_objects = gc.get_freeze_count()
        return self.frozen_objects

    def unfreeze(self) -> None:
        """Return frozen objects to the oldest generation."""
        gc.unfreeze()
        self.frozen_objects = 0

    def emergency_cleanup(self) -> dict[str, Any]:
        """Emergency profile, full collection, cycle scan and ``malloc_trim``.

        Returns what it did and the RSS drop. Costs a few full collections.
        """
        before = self._rss_reader()
        self.apply_strategy("emergency", rss_mb=before)
        cycles = self.cycles.scan()
        result = self.collect(2)
        trimmed = malloc_trim()
        after = self._rss_reader()
        return {
            "strategy": "emergency",
            "rss_before_mb": round(before, 2),
            "rss_after_mb": round(after, 2),
            "freed_mb": round(before - after, 2),
            "collected": result.collected,
            "cycles": cycles.as_dict(),
            "malloc_trim": trimmed or result.trimmed,
        }

    # -- monitor ---------------------------------------------------------

    @property
    def monitoring(self) -> bool:
        """True while the adaptive monitor thread runs."""
        return self._worker.running

    def start_monitoring(self) -> bool:
        """Start the adaptive monitor (daemon thread); False if already running."""
        if self.current_strategy is None:
            self.adapt()
        return self._worker.start()

    def stop_monitoring(self) -> bool:
        """Stop and join the monitor; False if it was not running."""
        return self._worker.stop()

    def restore_defaults(self) -> None:
        """Put back the GC thresholds that were in force at construction."""
        with self._lock:
            gc.set_threshold(*self._original_thresholds)
            self.current_strategy = None

    def close(self) -> None:
        """Stop the monitor, remove the GC callback, restore the thresholds."""
        self.stop_monitoring()
        self.pauses.uninstall()
        self.restore_defaults()

    # -- reports ---------------------------------------------------------

    def get_performance_report(self) -> dict[str, Any]:
        """Strategy, switches, GC pause statistics and memory, as plain data."""
        rss = self._rss_reader()
        profile = self.profile
        with self._lock:
            last = self.last_collect
            return {
                "target_memory_mb": self.target_memory_mb,
                "rss_mb": round(rss, 2),
                "level_for_rss": level_for(rss, self.target_memory_mb),
                "current_strategy": self.current_strategy,
                "thresholds": gc.get_threshold(),
                "profile_period_s": profile.period_s,
                "profile_memory_threshold_mb": round(
                    profile.memory_threshold_mb(self.target_memory_mb), 1
                ),
                "strategy_switches": self.strategy_switches,
                "recent_switches": [
                    {"at": at, "strategy": s, "rss_mb": round(r, 1)}
                    for at, s, r in self.history[-10:]
                ],
                "forced_collections": self.forced_collections,
                "last_forced_collection": None
                if last is None
                else {
                    "collected": last.collected,
                    "pause_ms": round(last.pause_ms, 3),
                    "freed_mb": round(last.freed_mb, 2),
                },
                "monitoring": self.monitoring,
                "monitor_errors": self._worker.errors,
                "frozen_objects": gc.get_freeze_count(),
                "gc": self.pauses.snapshot().as_dict(),
                "cycles_freed_total": self.cycles.total_objects,
            }


_GLOBAL: AggressiveGCOptimizer | None = None
_GLOBAL_LOCK = threading.Lock()


def get_gc_optimizer(target_memory_mb: float | None = None) -> AggressiveGCOptimizer:
    """Return the process-wide optimizer, creating it on first use.

    A ``target_memory_mb`` given later retargets the existing optimizer.
    """
    global _GLOBAL
    with _GLOBAL_LOCK:
        if _GLOBAL is None:
            _GLOBAL = AggressiveGCOptimizer(target_memory_mb or DEFAULT_TARGET_MB)
        elif target_memory_mb is not None:
            _GLOBAL.set_target(target_memory_mb)
        return _GLOBAL


def current_gc_optimizer() -> AggressiveGCOptimizer | None:
    """The process-wide optimizer if one was created, without creating it."""
    with _GLOBAL_LOCK:
        return _GLOBAL


def get_performance_report() -> dict[str, Any]:
    """Seed API: the global optimizer's :meth:`~AggressiveGCOptimizer.get_performance_report`."""
    return get_gc_optimizer().get_performance_report()


def _gb_to_mb(target_gb: float) -> float:
    if not (isinstance(target_gb, int | float) and target_gb > 0 and math.isfinite(target_gb)):
        raise ValueError(f"target_gb must be a finite number > 0, got {target_gb!r}")
    return float(target_gb) * 1024.0


def optimize_gc_for_memory_target(target_gb: float = 1.5) -> dict[str, Any]:
    """Seed API: retarget the global optimizer, pick a profile, collect once.

    Returns the performance report plus the collection's effect. No thread
    is started (see :func:`start_adaptive_gc_monitoring`).
    """
    opt = get_gc_optimizer(_gb_to_mb(target_gb))
    level = opt.adapt()
    result = opt.collect(2)
    report = opt.get_performance_report()
    report["applied_strategy"] = level
    report["collected"] = result.collected
    report["freed_mb"] = round(result.freed_mb, 2)
    return report


def start_adaptive_gc_monitoring(
    target_gb: float | None = None, *, sample_interval_s: float | None = None
) -> AggressiveGCOptimizer:
    """Seed API: start the global optimizer's adaptive monitor (idempotent)."""
    opt = get_gc_optimizer(None if target_gb is None else _gb_to_mb(target_gb))
    if sample_interval_s is not None:
        opt.set_sample_interval(sample_interval_s)
    opt.start_monitoring()
    return opt


def stop_adaptive_gc_monitoring() -> bool:
    """Stop the global optimizer's monitor; False if none was running."""
    with _GLOBAL_LOCK:
        opt = _GLOBAL
    return opt.stop_monitoring() if opt is not None else False


def emergency_gc_cleanup() -> dict[str, Any]:
    """Seed API: emergency profile, cycle scan, full collection, malloc_trim."""
    return get_gc_optimizer().emergency_cleanup()
