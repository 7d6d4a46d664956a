"""A TTL- and size-bounded cache for render results, built on ``cachetools``.

``RenderCache`` wraps :class:`cachetools.TTLCache` with a lock (TTLCache is
not thread safe), hit/miss/eviction counters and a memory estimate. Live
caches join a weak registry so that :func:`evict_all_caches` can reclaim
memory across the process under pressure.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

__all__ = [
    "DEFAULT_TTL_S",
    "CacheStats",
    "RenderCache",
    "deep_sizeof",
    "evict_all_caches",
    "live_caches",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_TTL_S = 30.0
"""The seed report's default render-cache TTL."""

_MISSING: Any = object()
_ALL_CACHES: weakref.WeakSet[RenderCache[Any, Any]] = weakref.WeakSet()
_ALL_CACHES_LOCK = threading.Lock()


class _CountingTTLCache(TTLCache[Any, Any]):
    """TTLCache that counts what it drops: size evictions and expirations."""

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize, ttl, timer=timer)
        self.evictions = 0
        self.expirations = 0

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self.evictions += 1
        return item

    def expire(self, time: float | None = None) -> Any:
        expired = super().expire(time)
        if expired:
            self.expirations += len(expired)
        return expired


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A consistent snapshot of one cache's counters."""

    name: str
    size: int
    max_size: int
    ttl_s: float
    hits: int
    misses: int
    evictions: int
    expirations: int

    @property
    def lookups(self) -> int:
        """Total ``get`` calls."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Fraction of lookups that hit (0.0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


def deep_sizeof(obj: object, _depth: int = 2) -> int:
    """Estimate ``obj``'s size in bytes: itself plus container members.

    Follows lists, tuples, sets and dicts two levels deep, which covers
    render results (strings, lists of lines, small dicts of segments)
    without walking arbitrary object graphs. An estimate, not an exact
    figure: shared objects are counted once per reference.
    """
    size = sys.getsizeof(obj)
    if _depth <= 0:
        return size
    if isinstance(obj, dict):
        for k, v in obj.items():
            size += deep_sizeof(k, _depth - 1) + deep_sizeof(v, _depth - 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            size += deep_sizeof(item, _depth - 1)
    return size


class RenderCache(Generic[K, V]):
    """Render results by key, dropped after ``ttl_seconds`` or when full (LRU).

    ``timer`` is the clock (``time.monotonic`` by default); tests inject a
    fake one. Every call takes one uncontended lock; ``get``/``set`` cost
    about as much as the underlying ``TTLCache`` plus that lock.
    """

    def __init__(
        self,
        max_size: int = 500,
        ttl_seconds: float = DEFAULT_TTL_S,
        *,
        name: str = "render",
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
        self.name = name
        self._lock = threading.Lock()
        self._cache = _CountingTTLCache(max_size, float(ttl_seconds), timer)
        self._hits = 0
        self._misses = 0
        with _ALL_CACHES_LOCK:
            _ALL_CACHES.add(self)

    @property
    def max_size(self) -> int:
        """Most entries kept; the least recently used goes first when full."""
        return int(self._cache.maxsize)

    @property
    def ttl_seconds(self) -> float:
        """Seconds an entry lives after it was set."""
        return float(self._cache.ttl)

    def get(self, key: K, default: V | None = None) -> V | None:
        """Return the cached value, or ``default`` on a miss (counted)."""
        with self._lock:
            try:
                value: V = self._cache[key]
            except KeyError:
                self._misses += 1
                return default
            self._hits += 1
            return value

    def set(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` (restarts its TTL)."""
        with self._lock:
            self._cache[key] = value

    def get_or_render(self, key: K, render: Callable[[], V]) -> V:
        """Return the cached value, or call ``render()``, cache and return it.

        ``render`` runs outside the lock, so two threads missing the same
        key at once may both render; the last one stored wins.
        """
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        value = render()
        self.set(key, value)
        return value

    def invalidate(self, key: K) -> bool:
        """Drop one entry; returns False if it was not cached."""
        with self._lock:
            return self._cache.pop(key, _MISSING) is not _MISSING

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._cache

    def __len__(self) -> int:
        """Live (unexpired) entries."""
        with self._lock:
            return len(self._cache)

    def evict_expired(self) -> int:
        """Drop every expired entry now; returns how many were dropped."""
        with self._lock:
            return len(list(self._cache.expire()))

    def clear(self) -> int:
        """Drop every entry; returns how many there were (expired included)."""
        with self._lock:
            n = self._cache.currsize
            self._cache.clear()
            return int(n)

    def memory_estimate_bytes(self) -> int:
        """Estimate the bytes held by keys and values (see :func:`deep_sizeof`).

        Costs O(entries): call it for reports, not per frame.
        """
        with self._lock:
            items = list(self._cache.items())
        return sum(deep_sizeof(k) + deep_sizeof(v) for k, v in items)

    def stats(self) -> CacheStats:
        """Return a consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                name=self.name,
                size=len(self._cache),
                max_size=int(self._cache.maxsize),
                ttl_s=float(self._cache.ttl),
                hits=self._hits,
                misses=self._misses,
                evictions=self._cache.evictions,
                expirations=self._cache.expirations,
            )

    def reset_stats(self) -> None:
        """Zero the counters (the entries stay)."""
        with self._lock:
            self._hits = self._misses = 0
            self._cache.evictions = self._cache.expirations = 0

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"RenderCache(name={s.name!r}, size={s.size}/{s.max_size}, ttl={s.ttl_s}s, "
            f"hit_rate={s.hit_rate:.2f})"
        )


def live_caches() -> list[RenderCache[Any, Any]]:
    """Every RenderCache still alive in the process."""
    with _ALL_CACHES_LOCK:
        return list(_ALL_CACHES)


def evict_all_caches(expired_only: bool = False) -> int:
    """Drop entries from every live RenderCache; returns how many.

    ``expired_only=True`` drops only what has outlived its TTL (cheap, no
    hit-rate cost); the default empties the caches.
    """
    total = 0
    for cache in live_caches():
        total += cache.evict_expired() if expired_only else cache.clear()
    return total
