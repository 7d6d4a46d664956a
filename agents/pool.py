"""Thread-safe object pools and the named pool registry of the seed report.

A pool keeps released objects for reuse instead of letting them be freed and
rebuilt. It only pays where construction is expensive relative to a reset
(objects with several containers, pre-sized buffers); for a bare ``dict`` a
pool is slower than ``{}``. ``benchmarks/bench_library.py`` measures both.

Every pool joins a weak set of live pools so that :func:`trim_all_pools` can
give memory back under pressure without the caller knowing the pools; the
named registry (:func:`create_pool`, :func:`get_pool`) holds strong
references, as in the seed report.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "ObjectPool",
    "PoolStats",
    "PoolableWidgetProperties",
    "PoolableWidgetState",
    "create_pool",
    "get_pool",
    "live_pools",
    "pool_names",
    "remove_pool",
    "trim_all_pools",
]

T = TypeVar("T")

_ALL_POOLS: weakref.WeakSet[ObjectPool[Any]] = weakref.WeakSet()
_ALL_POOLS_LOCK = threading.Lock()
_REGISTRY: dict[str, ObjectPool[Any]] = {}
_REGISTRY_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of one pool's counters."""

    name: str
    max_size: int
    in_pool: int
    created: int
    reused: int
    released: int
    rejected: int
    trimmed: int

    @property
    def acquired(self) -> int:
        """Objects handed out so far (created + reused)."""
        return self.created + self.reused

    @property
    def reuse_rate(self) -> float:
        """Fraction of acquisitions served from the pool (0.0 when none yet)."""
        total = self.acquired
        return self.reused / total if total else 0.0

    @property
    def outstanding(self) -> int:
        """Objects acquired and not yet handed back (accepted or rejected)."""
        return self.acquired - self.released - self.rejected


class ObjectPool(Generic[T]):
    """A bounded, thread-safe free list of reusable objects.

    ``acquire()`` returns a pooled object or a new one from ``factory``;
    ``release(obj)`` resets it and keeps it if it passes ``validate`` and
    the pool has room. By default an object with a ``reset()`` method is
    reset on release (``auto_reset=False`` turns that off); an explicit
    ``reset`` callback replaces it. Reset and validate run outside the lock,
    so a slow callback does not serialize other threads.

    Cost: one uncontended lock round trip per call, plus the callbacks.
    """

    def __init__(
        self,
        factory: Callable[[], T],
        max_size: int = 100,
        *,
        name: str = "pool",
        reset: Callable[[T], None] | None = None,
        validate: Callable[[T], bool] | None = None,
        auto_reset: bool = True,
    ) -> None:
        if not callable(factory):
            raise ValueError("factory must be callable")
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
            raise ValueError(f"max_size must be an int >= 0, got {max_size!r}")
        self.name = name
        self.factory = factory
        self._max_size = max_size
        self._reset = reset
        self._validate = validate
        self._auto_reset = auto_reset
        self._lock = threading.Lock()
        self._free: list[T] = []
        # ids of objects currently in the free list: a double release would
        # otherwise hand one object to two owners.
        self._free_ids: set[int] = set()
        self._created = 0
        self._reused = 0
        self._released = 0
        self._rejected = 0
        self._trimmed = 0
        with _ALL_POOLS_LOCK:
            _ALL_POOLS.add(self)

    @property
    def max_size(self) -> int:
        """Most objects the pool keeps; releases beyond it are rejected."""
        return self._max_size

    @max_size.setter
    def max_size(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"max_size must be an int >= 0, got {value!r}")
        with self._lock:
            self._max_size = value
            excess = len(self._free) - value
            if excess > 0:
                self._drop_locked(excess)

    def acquire(self) -> T:
        """Return a pooled object, or a new one from the factory."""
        with self._lock:
            if self._free:
                obj = self._free.pop()
                self._free_ids.discard(id(obj))
                self._reused += 1
                return obj
            self._created += 1
        # Construct outside the lock: factories may be slow.
        return self.factory()

    def release(self, obj: T) -> bool:
        """Hand ``obj`` back; returns True if it was pooled.

        Returns False (and counts a rejection) when the object fails
        ``validate``, the pool is full, or the object is already in the pool.
        Exceptions from ``reset``/``validate`` propagate after the object has
        been counted as rejected: a half-reset object is never pooled.
        """
        try:
            if self._validate is not None and not self._validate(obj):
                with self._lock:
                    self._rejected += 1
                return False
            if self._reset is not None:
                self._reset(obj)
            elif self._auto_reset:
                reset = getattr(obj, "reset", None)
                if reset is not None:
                    reset()
        except BaseException:
            with self._lock:
                self._rejected += 1
            raise
        with self._lock:
            if len(self._free) >= self._max_size or id(obj) in self._free_ids:
                self._rejected += 1
                return False
            self._free.append(obj)
            self._free_ids.add(id(obj))
            self._released += 1
            return True

    @contextmanager
    def borrow(self) -> Iterator[T]:
        """``with pool.borrow() as obj:`` acquires and always releases."""
        obj = self.acquire()
        try:
            yield obj
        finally:
            self.release(obj)

    def prefill(self, count: int) -> int:
        """Create objects until the pool holds ``count`` (capped at max_size).

        Returns how many objects were created. They count as created but
        not as acquired, so they do not distort the reuse rate.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        made = 0
        while True:
            with self._lock:
                if len(self._free) >= min(count, self._max_size):
                    return made
            obj = self.factory()
            with self._lock:
                if len(self._free) >= min(count, self._max_size):
                    return made
                self._free.append(obj)
                self._free_ids.add(id(obj))
                made += 1

    def trim(self, count: int | None = None) -> int:
        """Drop up to ``count`` pooled objects (all when None); returns how many.

        Dropped objects are freed as soon as nothing else references them.
        """
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0 or None, got {count}")
        with self._lock:
            n = len(self._free) if count is None else min(count, len(self._free))
            dropped = self._drop_locked(n)
        # Let the dropped objects die outside the lock (destructors may run).
        del dropped
        return n

    def _drop_locked(self, n: int) -> list[T]:
        if n <= 0:
            return []
        # Drop the oldest first: the most recently released are warmest.
        dropped = self._free[:n]
        del self._free[:n]
        for obj in dropped:
            self._free_ids.discard(id(obj))
        self._trimmed += n
        return dropped

    def __len__(self) -> int:
        """Objects currently waiting in the pool."""
        return len(self._free)

    def stats(self) -> PoolStats:
        """Return a consistent snapshot of the counters (one lock round trip)."""
        with self._lock:
            return PoolStats(
                name=self.name,
                max_size=self._max_size,
                in_pool=len(self._free),
                created=self._created,
                reused=self._reused,
                released=self._released,
                rejected=self._rejected,
                trimmed=self._trimmed,
            )

    def reset_stats(self) -> None:
        """Zero the counters (the pooled objects stay)."""
        with self._lock:
            self._created = self._reused = self._released = 0
            self._rejected = self._trimmed = 0

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"ObjectPool(name={s.name!r}, in_pool={s.in_pool}, max_size={s.max_size}, "
            f"reuse_rate={s.reuse_rate:.2f})"
        )


@dataclass(slots=True, weakref_slot=True)
class PoolableWidgetState:
    """A TUI widget's mutable state: a value dict, flags and a version counter.

    ``reset()`` clears it in place and keeps the containers, which is what
    makes reuse cheaper than construction.
    """

    values: dict[str, Any] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    children: list[Any] = field(default_factory=list)
    version: int = 0
    focused: bool = False
    visible: bool = True

    def update(self, **values: Any) -> None:
        """Set values and bump the version (render caches key on it)."""
        self.values.update(values)
        self.version += 1

    def reset(self) -> None:
        """Return to the freshly constructed state."""
        self.values.clear()
        self.flags.clear()
        self.children.clear()
        self.version = 0
        self.focused = False
        self.visible = True


@dataclass(slots=True, weakref_slot=True)
class PoolableWidgetProperties:
    """A TUI widget's configuration: properties, style and CSS classes."""

    props: dict[str, Any] = field(default_factory=dict)
    style: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    widget_type: str = ""

    def reset(self) -> None:
        """Return to the freshly constructed state."""
        self.props.clear()
        self.style.clear()
        self.classes.clear()
        self.widget_type = ""


def create_pool(
    name: str,
    factory: Callable[[], T],
    max_size: int = 100,
    *,
    reset: Callable[[T], None] | None = None,
    validate: Callable[[T], bool] | None = None,
    replace: bool = False,
) -> ObjectPool[T]:
    """Create a pool and register it under ``name`` (see :func:`get_pool`).

    Raises ValueError if the name is taken, unless ``replace=True``.
    """
    if not name:
        raise ValueError("pool name must be a non-empty string")
    pool = ObjectPool(factory, max_size, name=name, reset=reset, validate=validate)
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"a pool named {name!r} already exists (pass replace=True)")
        _REGISTRY[name] = pool
    return pool


def get_pool(name: str) -> ObjectPool[Any]:
    """Return the registered pool ``name``; raises KeyError if there is none."""
    with _REGISTRY_LOCK:
        try:
            return _REGISTRY[name]
        except KeyError:
            raise KeyError(f"no pool named {name!r}; known: {sorted(_REGISTRY)}") from None


def remove_pool(name: str) -> bool:
    """Unregister ``name``; returns False if it was not registered."""
    with _REGISTRY_LOCK:
        return _REGISTRY.pop(name, None) is not None


def pool_names() -> list[str]:
    """Names of the registered pools, sorted."""
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY)


def live_pools() -> list[ObjectPool[Any]]:
    """Every pool still alive in the process, registered or not."""
    with _ALL_POOLS_LOCK:
        return list(_ALL_POOLS)


def trim_all_pools(fraction: float = 1.0) -> int:
    """Release ``fraction`` of the pooled objects of every live pool.

    Returns how many objects were dropped in total. ``fraction=1.0`` empties
    every pool; ``0.5`` drops half of each (rounded up). Costs O(objects
    dropped); the memory comes back when the objects are collected.
    """
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    total = 0
    for pool in live_pools():
        total += pool.trim(math.ceil(len(pool) * fraction))
    return total
