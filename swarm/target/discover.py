"""Find the memo caches of an unmodified app, and estimate what each holds.

:class:`Discovery` walks ``sys.modules`` — each module's globals, the
dictionaries of the classes it defines (methods, ``staticmethod`` and
``classmethod`` wrappers, nested classes) and the closure cells of its
module-level functions, two decorator layers deep (methods' closures are
not walked) — for ``functools._lru_cache_wrapper`` objects (``lru_cache``
and ``cache``). It never walks the heap (no ``gc.get_objects()``): a full scan visits only
module and class namespaces, and a rescan after imports visits only the
modules that are new. The runtime calls it when pressure first rises and
when ``len(sys.modules)`` has changed, never on the 20 Hz sampling path.

**How a size is estimated** (:func:`estimate_cache_bytes`). The cache's own
dictionary is reached with ``gc.get_referents(wrapper)`` (the C wrapper
exposes it to the collector, not to Python). Up to ``samples`` entries,
spread evenly over the cache, are measured deep: ``sys.getsizeof`` of the
key, the result and everything they reach through ``gc.get_referents``,
counting an object only if the cache holds its last references (an object
that something else also references would not be freed by clearing, so
its refcount excludes it). The estimate is ``getsizeof(cache dict) +
entries x mean sampled entry`` (+ 56 bytes a link per entry for a bounded
cache). ``benchmarks/bench_reclaim.py`` measures how far off that is
against tracemalloc's count of what a clear really freed.

Nothing here raises into the caller's app: a module whose namespace cannot
be read is skipped and counted.
"""

from __future__ import annotations

import fnmatch
import functools
import gc
import itertools
import operator
import sys
import time
import types
import weakref
from collections.abc import Callable, Iterable, Iterator

from hivemind.swarm.env import env_str
from hivemind.swarm.record import field, record

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CacheFound",
    "Discovery",
    "discover_enabled",
    "estimate_cache_bytes",
    "estimate_mapping_bytes",
    "is_kept",
    "keep",
    "keep_patterns",
]

_LRU: type = functools._lru_cache_wrapper
_KEEP_ATTR = "__hivemind_keep__"
_LINK_BYTES = 56  # a bounded lru_cache's per-entry link object (_lru_list_elem)
_SKIP_DEEP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)
_OWN_PREFIX = "hivemind."
_kept_ids: weakref.WeakSet[Any] = weakref.WeakSet()


def discover_enabled() -> bool:
    """``HIVEMIND_DISCOVER`` (default on): ``0`` turns cache discovery off."""
    return (env_str("discover") or "1").strip().lower() not in ("0", "false", "no", "off")


def keep_patterns() -> tuple[str, ...]:
    """Cache names (``fnmatch`` patterns, e.g. ``app.models.*``) from ``HIVEMIND_KEEP``."""
    raw = env_str("keep") or ""
    return tuple(p.strip() for p in raw.replace(";", ",").split(",") if p.strip())


def keep(obj: Any) -> Any:
    """Mark a cache (an ``lru_cache`` function, or a cache object) never to be cleared.

    Returns ``obj``, so it also works as a decorator above ``@lru_cache``.
    """
    try:
        setattr(obj, _KEEP_ATTR, True)
    except (AttributeError, TypeError):
        try:
            _kept_ids.add(obj)
        except TypeError:  # neither an attribute nor a weak reference: remember by id
            _kept_strong.add(id(obj))
    return obj


_kept_strong: set[int] = set()


def is_kept(obj: Any, name: str = "", patterns: Iterable[str] = ()) -> bool:
    """Whether ``obj`` was marked with :func:`keep` or its ``name`` matches a keep pattern."""
    try:
        if getattr(obj, _KEEP_ATTR, False) is True:
            return True
        if obj in _kept_ids:
            return True
    except TypeError:
        pass
    if id(obj) in _kept_strong:
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# --- size estimates -------------------------------------------------------------


def _calibrate() -> int:
    """The refcount an object has when only its parent references it, inside :func:`_deep`."""
    probe = [object()]
    for child in gc.get_referents(probe):
        return sys.getrefcount(child)
    return 4  # pragma: no cover


_EXCLUSIVE = _calibrate()


def _deep(root: Any, seen: set[int], extra_refs: int, budget: int = 5000) -> int:
    """``getsizeof`` of ``root`` and what it reaches that nothing else references.

    ``extra_refs`` is how many references to ``root`` the caller knows are its
    own (the cache's, our sampling's); objects with more are shared and count 0.
    """
    if id(root) in seen or isinstance(root, _SKIP_DEEP):
        return 0
    if sys.getrefcount(root) > _EXCLUSIVE + extra_refs:
        return 0
    seen.add(id(root))
    total = 0
    stack = [root]
    while stack and budget > 0:
        obj = stack.pop()
        budget -= 1
        try:
            total += sys.getsizeof(obj)
        except Exception:  # a broken __sizeof__ in the app
            continue
        for child in gc.get_referents(obj):
            if id(child) in seen or isinstance(child, _SKIP_DEEP):
                continue
            if sys.getrefcount(child) > _EXCLUSIVE:
                continue  # referenced from elsewhere too: clearing would not free it
            seen.add(id(child))
            stack.append(child)
    return total


def _spread(n: int, samples: int) -> int:
    return max(1, n // max(1, samples))


def _sample_pairs(pairs: Iterator[tuple[Any, Any]], n: int, samples: int) -> list[tuple[Any, Any]]:
    return list(itertools.islice(pairs, 0, None, _spread(n, samples)))[:samples]


def _dict_sample(d: dict[Any, Any], step: int, samples: int) -> list[tuple[Any, Any]]:
    """Every ``step``-th (key, value) of ``d``, at most ``samples``: two C-level list copies
    (keys and values keep the same order), instead of one tuple per entry."""
    keys = list(d)[::step][:samples]
    values = list(d.values())[::step][:samples]
    return list(zip(keys, values, strict=False))


def _is_cache_dict(refs: list[Any], i: int, n: int, own: Any) -> bool:
    r = refs[i] if 0 <= i < len(refs) else None
    return type(r) is dict and r is not own and len(r) == n


def estimate_cache_bytes(wrapper: Any, samples: int = 32) -> int:
    """Estimated bytes an ``lru_cache`` wrapper's clear would free (see module docstring)."""
    info = wrapper.cache_info()
    n = int(info.currsize)
    if n == 0:
        return 0
    refs = gc.get_referents(wrapper)
    own_dict = getattr(wrapper, "__dict__", None)
    step = _spread(n, samples)
    if info.maxsize is not None and _is_cache_dict(refs, 3 * n + 1, n, own_dict):
        # CPython 3.11-3.13 visit each link as (type, key, result), then the dict
        cache: dict[Any, Any] = refs[3 * n + 1]
        picked = list(zip(refs[1 : 3 * n : 3 * step], refs[2 : 3 * n : 3 * step], strict=False))
        extra = (3, 2)  # held by: key = dict, link, our pair; result = link, our pair
    else:
        idx = next((i for i in range(len(refs)) if _is_cache_dict(refs, i, n, own_dict)), -1)
        if idx < 0:
            return 0
        cache = refs[idx]
        if info.maxsize is None:  # unbounded: the dict maps key -> result
            picked = _dict_sample(cache, step, samples)
            extra = (2, 2)  # held by the dict and our pair
        else:  # another layout: keys and results before the dict, types in between
            flat = [r for r in refs[:idx] if not isinstance(r, type)]
            picked = list(zip(flat[0::2], flat[1::2], strict=False))[::step]
            extra = (4, 3)  # as above, plus our flat list
    picked = picked[:samples]
    seen: set[int] = set()
    del refs
    if not picked:
        return 0
    kx, vx = extra
    per = sum(_deep(k, seen, kx) + _deep(v, seen, vx) for k, v in picked) / len(picked)
    link = _LINK_BYTES if info.maxsize is not None else 0
    return int(sys.getsizeof(cache) + n * (per + link))


def estimate_mapping_bytes(mapping: Any, samples: int = 32) -> int:
    """Estimated bytes held by a dict-like cache (a ``dict``, a ``cachetools`` cache)."""
    try:
        n = len(mapping)
    except Exception:
        return 0
    if n == 0:
        return 0
    inner = getattr(mapping, "_Cache__data", None)  # cachetools keeps a plain dict inside
    data = inner if isinstance(inner, dict) else mapping
    try:
        if isinstance(data, dict):
            picked = _dict_sample(data, _spread(n, samples), samples)
        else:
            picked = _sample_pairs(iter(list(data.items())), n, samples)
    except Exception:
        return 0
    seen: set[int] = set()
    per = sum(_deep(k, seen, 2) + _deep(v, seen, 2) for k, v in picked) / max(1, len(picked))
    return int(sys.getsizeof(data) + n * per)


# --- discovery ------------------------------------------------------------------


@record
class CacheFound:
    """One ``lru_cache`` found in the app, with its counters at the last look."""

    name: str  # module.qualname, wire-safe
    ref: Callable[[], Any]  # weak reference to the wrapper
    hits: int = 0
    misses: int = 0
    currsize: int = 0
    maxsize: int | None = None
    est_bytes: int = 0
    keep: bool = False
    calls_at_scan: int = 0
    seen_at: float = 0.0
    calls_per_s: float = 0.0

    @property
    def hit_rate(self) -> float:
        calls = self.hits + self.misses
        return self.hits / calls if calls else 0.0

    def refresh(self, now: float, samples: int = 32) -> bool:
        """Re-read ``cache_info()`` and the size estimate; False if the cache is gone."""
        wrapper = self.ref()
        if wrapper is None:
            return False
        info = wrapper.cache_info()
        calls = int(info.hits + info.misses)
        if self.seen_at:
            dt = max(1e-3, now - self.seen_at)
            self.calls_per_s = max(0, calls - self.calls_at_scan) / dt
        self.calls_at_scan, self.seen_at = calls, now
        self.hits, self.misses = int(info.hits), int(info.misses)
        self.currsize, self.maxsize = int(info.currsize), info.maxsize
        self.est_bytes = estimate_cache_bytes(wrapper, samples) if self.currsize else 0
        return True


_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-")


def _wire_name(wrapper: Any) -> str:
    mod = getattr(wrapper, "__module__", None) or "?"
    qual = getattr(wrapper, "__qualname__", None) or getattr(wrapper, "__name__", "?")
    raw = f"{mod}.{qual}"
    return "".join(c if c in _SAFE else "_" for c in raw)[:110]


@record
class Discovery:
    """The app's ``lru_cache`` wrappers, found by walking module namespaces.

    :meth:`scan` walks every module (or only the new ones) and returns how
    many caches are known; :attr:`caches` holds them by id. Each scan's
    duration is in :attr:`scan_ms`.
    """

    skip_own: bool = True
    caches: dict[int, CacheFound] = field(default_factory=dict)
    scanned: set[str] = field(default_factory=set)
    modules_seen: int = 0
    scans: int = 0
    scan_ms: float = 0.0
    total_scan_ms: float = 0.0
    errors: int = 0

    def modules_changed(self) -> bool:
        """O(1): has ``sys.modules`` grown or shrunk since the last scan?"""
        return len(sys.modules) != self.modules_seen

    def scan(self, *, only_new: bool = False) -> int:
        """Walk the modules (all, or only those not walked before); return caches known."""
        t0 = time.perf_counter()
        mods = list(sys.modules.items())
        self.modules_seen = len(mods)
        namespaces = []
        for modname, mod in mods:
            if only_new and modname in self.scanned:
                continue
            self.scanned.add(modname)
            if self.skip_own and (modname.startswith(_OWN_PREFIX) or modname == "hivemind"):
                continue
            if isinstance(mod, types.ModuleType):
                ns = getattr(mod, "__dict__", None)
                if type(ns) is dict:
                    namespaces.append(ns)
        found: dict[int, Any] = {}
        try:
            _walk_namespaces(namespaces, found)
        except Exception:  # an odd object must not stop the guard
            self.errors += 1
        if not only_new:  # forget the caches of modules gone away
            self.caches = {k: c for k, c in self.caches.items() if c.ref() is not None}
        for key, wrapper in found.items():
            if key not in self.caches:
                self.caches[key] = CacheFound(name=_wire_name(wrapper), ref=weakref.ref(wrapper))
        self.scans += 1
        self.scan_ms = (time.perf_counter() - t0) * 1000
        self.total_scan_ms += self.scan_ms
        return len(self.caches)

    def refresh(self, patterns: Iterable[str] = (), now: float | None = None) -> list[CacheFound]:
        """Re-read every known cache's counters and size; return them, largest first."""
        now = time.monotonic() if now is None else now
        pats = tuple(patterns)
        alive = []
        for key, c in list(self.caches.items()):
            try:
                ok = c.refresh(now)
            except Exception:
                self.errors += 1
                ok = False
            if not ok:
                self.caches.pop(key, None)
                continue
            c.keep = is_kept(c.ref(), c.name, pats)
            alive.append(c)
        alive.sort(key=lambda c: -c.est_bytes)
        return alive


# --- the walk -------------------------------------------------------------------
# Every step is a C-level pass (gc.get_referents, map, itertools.compress) over
# the namespaces' values; Python code runs only for the few interesting ones.

_func_of: Callable[[Any], Any] = operator.attrgetter("__func__")
_closure = operator.attrgetter("__closure__")
_type_of: Callable[[Any], type] = type
_INTERESTING = frozenset((_LRU, types.FunctionType, staticmethod, classmethod))


def _positions(kinds: list[type], kind: type) -> Iterator[int]:
    """Indexes of ``kind`` in ``kinds``: ``list.index`` runs in C, so rare kinds cost ~nothing."""
    i = -1
    while True:
        try:
            i = kinds.index(kind, i + 1)
        except ValueError:
            return
        yield i


def _of_kind(values: list[Any], kinds: list[type], kind: type) -> list[Any]:
    """The values whose type is exactly ``kind`` (one C-level pass)."""
    return list(itertools.compress(values, map(operator.is_, kinds, itertools.repeat(kind))))


def _walk_namespaces(namespaces: list[dict[str, Any]], found: dict[int, Any]) -> None:
    """Find lru_cache wrappers in ``namespaces`` (module dicts), their classes and closures."""
    seen_classes: set[Any] = set()
    spaces: list[dict[str, Any]] = namespaces
    for _depth in range(3):  # module dicts, then class dicts, then nested classes' dicts
        if not spaces:
            return
        # every namespace's values in one C-level pass
        values = list(itertools.chain.from_iterable(map(dict.values, spaces)))
        kinds: list[type] = list(map(_type_of, values))
        present = set(kinds)
        if _LRU in present:
            for i in _positions(kinds, _LRU):
                found[id(values[i])] = values[i]
        for desc_type in (staticmethod, classmethod):  # @staticmethod over @lru_cache
            if desc_type in present:
                inner = list(map(_func_of, _of_kind(values, kinds, desc_type)))
                inner_kinds: list[type] = list(map(_type_of, inner))
                for i in _positions(inner_kinds, _LRU):
                    found[id(inner[i])] = inner[i]
        if _depth == 0:  # closures of module-level functions (methods' are not walked)
            _from_functions(_of_kind(values, kinds, types.FunctionType), found)
        metas = {t: True for t in present if issubclass(t, type)}
        try:  # classes hash by identity (a metaclass overriding __hash__ would be odd)
            if len(metas) == 1:
                classes = set(_of_kind(values, kinds, next(iter(metas))))
            else:
                classes = set(itertools.compress(values, map(metas.get, kinds)))
            classes -= seen_classes
        except TypeError:
            classes = set()
        seen_classes |= classes
        del values, kinds
        # a heap type's referents include its namespace dict (static types have none)
        refs = gc.get_referents(*classes) if classes else []
        spaces = _of_kind(refs, list(map(_type_of, refs)), dict)


def _from_functions(funcs: list[Any], found: dict[int, Any]) -> None:
    """What the closure cells of ``funcs`` hold, two decorator layers deep."""
    for _layer in range(2):
        if not funcs:
            return
        closures = list(filter(None, map(_closure, funcs)))
        reached = gc.get_referents(*gc.get_referents(*closures)) if closures else []
        kinds = list(map(_type_of, reached))
        for i in _positions(kinds, _LRU):
            found[id(reached[i])] = reached[i]
        funcs = _of_kind(reached, kinds, types.FunctionType)
