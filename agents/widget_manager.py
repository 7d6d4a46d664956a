"""Memory management for TUI widgets: pools, render cache, weak registry.

:class:`WidgetMemoryManager` owns two object pools (widget state and widget
properties), a :class:`~hivemind.agents.render_cache.RenderCache` for render
results, a weak registry of live widgets (an entry vanishes when its widget
dies, so the registry never keeps a widget alive) and an optional background
monitor. :class:`ManagedWidget` is the unit a TUI uses: a context manager
that borrows its state and properties from the pools and hands them back on
exit.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, TypeVar, cast

from hivemind.agents.memtools import MB, current_rss_bytes, malloc_trim
from hivemind.agents.periodic import PeriodicWorker
from hivemind.agents.pool import (
    ObjectPool,
    PoolableWidgetProperties,
    PoolableWidgetState,
    trim_all_pools,
)
from hivemind.agents.render_cache import RenderCache, evict_all_caches
from hivemind.swarm.vocab import DEFAULT_TARGET_MB

__all__ = [
    "ManagedWidget",
    "WidgetMemoryManager",
    "emergency_widget_cleanup",
    "generate_memory_report",
    "get_widget_memory_manager",
    "optimize_widget_memory",
]

R = TypeVar("R")

DEFAULT_MONITOR_INTERVAL_S = 5.0
# Reclaim no more often than this: a pool emptied every 5 s under steady
# pressure would turn every widget creation back into construction.
_ACTION_COOLDOWN_S = 30.0


class ManagedWidget:
    """A widget whose state and properties come from the manager's pools.

    Use it as a context manager (``with ManagedWidget(manager, "button") as
    w:``) or call :meth:`close`; either way the state and properties go back
    to the pools and the widget leaves the registry. Using a widget after
    close raises RuntimeError, since its state now belongs to someone else.
    """

    __slots__ = ("__weakref__", "_closed", "manager", "props", "state", "widget_id", "widget_type")

    def __init__(
        self,
        manager: WidgetMemoryManager,
        widget_type: str = "widget",
        widget_id: str | None = None,
        **props: Any,
    ) -> None:
        self.manager = manager
        self.widget_type = widget_type
        self.widget_id = widget_id or manager._next_id(widget_type)
        self.state: PoolableWidgetState = manager.state_pool.acquire()
        self.props: PoolableWidgetProperties = manager.props_pool.acquire()
        self.props.widget_type = widget_type
        self.props.props.update(props)
        self._closed = False
        try:
            manager.register_widget(self.widget_id, self)
        except BaseException:
            self._give_back()
            raise

    @property
    def closed(self) -> bool:
        """True once the state and properties went back to the pools."""
        return self._closed

    def render(self, render_fn: Callable[[ManagedWidget], R]) -> R:
        """Render through the manager's cache, keyed on (id, state version).

        A state change (``state.update``) bumps the version, so the next
        render misses and re-renders; an unchanged widget hits the cache.
        """
        if self._closed:
            raise RuntimeError(f"widget {self.widget_id!r} is closed")
        key = (self.widget_id, self.state.version)
        return cast(R, self.manager.render_cache.get_or_render(key, lambda: render_fn(self)))

    def close(self) -> None:
        """Return state and properties to the pools (idempotent)."""
        if self._closed:
            return
        self.manager.render_cache.invalidate((self.widget_id, self.state.version))
        self.manager.unregister_widget(self.widget_id, self)
        self._give_back()

    def _give_back(self) -> None:
        self._closed = True
        self.manager.state_pool.release(self.state)
        self.manager.props_pool.release(self.props)
        self.manager._closed_count += 1

    def __enter__(self) -> ManagedWidget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ManagedWidget({self.widget_type!r}, id={self.widget_id!r}, closed={self._closed})"


class WidgetMemoryManager:
    """Pools, render cache, weak widget registry and a memory monitor.

    Sizes follow the seed report: state pool 200, properties pool 300,
    render cache 500 entries with a 10 s TTL. Construction is cheap and
    starts no thread; :meth:`start_monitoring` does.
    """

    def __init__(
        self,
        target_memory_mb: float = DEFAULT_TARGET_MB,
        *,
        state_pool_size: int = 200,
        props_pool_size: int = 300,
        cache_size: int = 500,
        cache_ttl_s: float = 10.0,
        monitor_interval_s: float = DEFAULT_MONITOR_INTERVAL_S,
        timer: Callable[[], float] = time.monotonic,
        rss_reader: Callable[[], float] | None = None,
    ) -> None:
        if not target_memory_mb > 0:
            raise ValueError(f"target_memory_mb must be > 0, got {target_memory_mb!r}")
        self.target_memory_mb = float(target_memory_mb)
        self.state_pool: ObjectPool[PoolableWidgetState] = ObjectPool(
            PoolableWidgetState, state_pool_size, name="widget_states"
        )
        self.props_pool: ObjectPool[PoolableWidgetProperties] = ObjectPool(
            PoolableWidgetProperties, props_pool_size, name="widget_properties"
        )
        self.render_cache: RenderCache[Hashable, Any] = RenderCache(
            cache_size, cache_ttl_s, name="widget_render", timer=timer
        )
        # WeakValueDictionary rather than dict[str, weakref.ref]: it removes
        # dead entries itself and guards iteration against removals that a
        # collection in another thread can trigger.
        self.widget_registry: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._registry_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._registered_count = 0
        self._closed_count = 0
        self._timer = timer
        self._rss_reader = rss_reader or (lambda: current_rss_bytes() / MB)
        self._last_action_at = float("-inf")
        self.optimizations = 0
        self.emergency_cleanups = 0
        self._worker = PeriodicWorker(
            self._tick, monitor_interval_s, name="hivemind-widget-monitor"
        )

    # -- registry --------------------------------------------------------

    def _next_id(self, widget_type: str) -> str:
        return f"{widget_type}-{next(self._ids)}"

    def register_widget(self, widget_id: str, widget: object) -> None:
        """Track ``widget`` weakly under ``widget_id``.

        Raises ValueError if another live widget already has that id, and
        TypeError if the widget cannot be weakly referenced.
        """
        with self._registry_lock:
            existing = self.widget_registry.get(widget_id)
            if existing is not None and existing is not widget:
                raise ValueError(f"widget id {widget_id!r} is already registered")
            self.widget_registry[widget_id] = widget
            self._registered_count += 1

    def unregister_widget(self, widget_id: str, widget: object | None = None) -> bool:
        """Forget ``widget_id`` (only if it maps to ``widget``, when given)."""
        with self._registry_lock:
            current = self.widget_registry.get(widget_id)
            if current is None or (widget is not None and current is not widget):
                return False
            del self.widget_registry[widget_id]
            return True

    def get_widget(self, widget_id: str) -> Any | None:
        """The live widget registered under ``widget_id``, or None."""
        return self.widget_registry.get(widget_id)

    @property
    def live_widgets(self) -> int:
        """Registered widgets still alive."""
        return len(self.widget_registry)

    def create_widget(self, widget_type: str = "widget", **props: Any) -> ManagedWidget:
        """Shorthand for ``ManagedWidget(self, widget_type, **props)``."""
        return ManagedWidget(self, widget_type, **props)

    # -- reclaim ---------------------------------------------------------

    def optimize(self) -> dict[str, Any]:
        """Gentle reclaim: drop expired renders, halve idle pools, collect.

        Returns what was released and the RSS before/after. Costs one full
        collection (milliseconds to tens of ms on a large heap).
        """
        before = self._rss_reader()
        expired = self.render_cache.evict_expired()
        trimmed = self.state_pool.trim(len(self.state_pool) // 2)
        trimmed += self.props_pool.trim(len(self.props_pool) // 2)
        collected = gc.collect()
        after = self._rss_reader()
        self.optimizations += 1
        self._last_action_at = self._timer()
        return {
            "action": "optimize",
            "cache_entries_evicted": expired,
            "pool_objects_released": trimmed,
            "gc_collected": collected,
            "rss_before_mb": round(before, 2),
            "rss_after_mb": round(after, 2),
            "freed_mb": round(before - after, 2),
        }

    def emergency_widget_cleanup(self) -> dict[str, Any]:
        """Hard reclaim: empty the render cache and both pools, collect, trim.

        Live widgets are untouched. Returns what was released.
        """
        before = self._rss_reader()
        cleared = self.render_cache.clear()
        trimmed = self.state_pool.trim() + self.props_pool.trim()
        collected = gc.collect()
        trimmed_heap = malloc_trim()
        after = self._rss_reader()
        self.emergency_cleanups += 1
        self._last_action_at = self._timer()
        return {
            "action": "emergency_widget_cleanup",
            "cache_entries_evicted": cleared,
            "pool_objects_released": trimmed,
            "gc_collected": collected,
            "malloc_trim": trimmed_heap,
            "live_widgets": self.live_widgets,
            "rss_before_mb": round(before, 2),
            "rss_after_mb": round(after, 2),
            "freed_mb": round(before - after, 2),
        }

    # -- monitor ---------------------------------------------------------

    def _tick(self) -> float | None:
        self.render_cache.evict_expired()
        rss = self._rss_reader()
        if self._timer() - self._last_action_at < _ACTION_COOLDOWN_S:
            return None
        if rss > self.target_memory_mb:
            self.emergency_widget_cleanup()
        elif rss > self.target_memory_mb * 0.9:
            self.optimize()
        return None

    @property
    def monitoring(self) -> bool:
        """True while the monitor thread runs."""
        return self._worker.running

    def start_monitoring(self) -> bool:
        """Start the background monitor (daemon); False if already running.

        Every ``monitor_interval_s`` (5 s by default) it drops expired
        renders and, at most every 30 s, runs :meth:`optimize` above 90 % of
        the target or :meth:`emergency_widget_cleanup` above the target.
        """
        return self._worker.start()

    def stop_monitoring(self) -> bool:
        """Stop and join the monitor; False if it was not running."""
        return self._worker.stop()

    def close(self) -> None:
        """Stop the monitor and release pooled objects and cached renders."""
        self.stop_monitoring()
        self.render_cache.clear()
        self.state_pool.trim()
        self.props_pool.trim()

    # -- reports ---------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Pools, cache, registry and memory figures as plain data.

        Costs O(cache entries) for the cache's memory estimate.
        """
        sp, pp, cs = self.state_pool.stats(), self.props_pool.stats(), self.render_cache.stats()
        return {
            "target_memory_mb": self.target_memory_mb,
            "rss_mb": round(self._rss_reader(), 2),
            "live_widgets": self.live_widgets,
            "widgets_registered": self._registered_count,
            "widgets_closed": self._closed_count,
            "pools": {
                p.name: {
                    "in_pool": p.in_pool,
                    "max_size": p.max_size,
                    "created": p.created,
                    "reused": p.reused,
                    "reuse_rate": round(p.reuse_rate, 4),
                    "rejected": p.rejected,
                }
                for p in (sp, pp)
            },
            "render_cache": {
                "size": cs.size,
                "max_size": cs.max_size,
                "ttl_s": cs.ttl_s,
                "hits": cs.hits,
                "misses": cs.misses,
                "hit_rate": round(cs.hit_rate, 4),
                "evictions": cs.evictions,
                "expirations": cs.expirations,
                "memory_estimate_bytes": self.render_cache.memory_estimate_bytes(),
            },
            "optimizations": self.optimizations,
            "emergency_cleanups": self.emergency_cleanups,
            "monitoring": self.monitoring,
        }

    def generate_memory_report(self) -> str:
        """A human-readable summary of :meth:`get_stats`."""
        s = self.get_stats()
        rc = s["render_cache"]
        lines = [
            "Widget memory report",
            f"  RSS: {s['rss_mb']:.1f} MB of {s['target_memory_mb']:.0f} MB target",
            f"  Widgets: {s['live_widgets']} live, {s['widgets_registered']} registered, "
            f"{s['widgets_closed']} closed",
        ]
        for name, p in s["pools"].items():
            lines.append(
                f"  Pool {name}: {p['in_pool']}/{p['max_size']} pooled, "
                f"{p['created']} created, {p['reused']} reused "
                f"(reuse {p['reuse_rate']:.1%}), {p['rejected']} rejected"
            )
        lines.append(
            f"  Render cache: {rc['size']}/{rc['max_size']} entries, ttl {rc['ttl_s']:g}s, "
            f"hit rate {rc['hit_rate']:.1%} ({rc['hits']} hits, {rc['misses']} misses), "
            f"~{rc['memory_estimate_bytes'] / 1024:.1f} KiB"
        )
        lines.append(
            f"  Reclaims: {s['optimizations']} optimize, "
            f"{s['emergency_cleanups']} emergency; monitor {'on' if s['monitoring'] else 'off'}"
        )
        return "\n".join(lines)


_GLOBAL: WidgetMemoryManager | None = None
_GLOBAL_LOCK = threading.Lock()


def get_widget_memory_manager(target_memory_mb: float | None = None) -> WidgetMemoryManager:
    """Return the process-wide manager, creating it on first use.

    A ``target_memory_mb`` given later retargets the existing manager.
    """
    global _GLOBAL
    with _GLOBAL_LOCK:
        if _GLOBAL is None:
            _GLOBAL = WidgetMemoryManager(
                DEFAULT_TARGET_MB if target_memory_mb is None else target_memory_mb
            )
        elif target_memory_mb is not None:
            if not target_memory_mb > 0:
                raise ValueError(f"target_memory_mb must be > 0, got {target_memory_mb!r}")
            _GLOBAL.target_memory_mb = float(target_memory_mb)
        return _GLOBAL


def optimize_widget_memory() -> dict[str, Any]:
    """Seed API: run :meth:`WidgetMemoryManager.optimize` on the global manager."""
    return get_widget_memory_manager().optimize()


def generate_memory_report() -> str:
    """Seed API: the global manager's text report."""
    return get_widget_memory_manager().generate_memory_report()


def emergency_widget_cleanup() -> dict[str, Any]:
    """Seed API: hard reclaim of every widget pool and render cache in the process.

    Empties the global manager's cache and pools (if one exists; none is
    created just to be cleaned), then every other live pool and cache, then
    collects and trims the heap. Returns what was released in total.
    """
    with _GLOBAL_LOCK:
        manager = _GLOBAL
    before = current_rss_bytes() / MB
    result: dict[str, Any] = (
        manager.emergency_widget_cleanup() if manager is not None else {"live_widgets": 0}
    )
    pool_objects = trim_all_pools(1.0)
    cache_entries = evict_all_caches()
    collected = gc.collect()
    trimmed = malloc_trim()
    after = current_rss_bytes() / MB
    return {
        "action": "emergency_widget_cleanup",
        "cache_entries_evicted": result.get("cache_entries_evicted", 0) + cache_entries,
        "pool_objects_released": result.get("pool_objects_released", 0) + pool_objects,
        "gc_collected": result.get("gc_collected", 0) + collected,
        "malloc_trim": bool(result.get("malloc_trim")) or trimmed,
        "live_widgets": result["live_widgets"],
        "rss_before_mb": round(before, 2),
        "rss_after_mb": round(after, 2),
        "freed_mb": round(before - after, 2),
    }
