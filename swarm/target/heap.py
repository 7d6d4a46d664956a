"""The C heap and the interpreter's own caches: what they hold, and clearing them.

:func:`heap_stats` reads glibc's ``mallinfo2()`` (free bytes the allocator
keeps instead of returning them: the fragmentation ``malloc_trim`` may give
back) next to RSS and, when tracing, tracemalloc's live bytes. Elsewhere
(musl, macOS) it says why the C-heap figures are missing.

:func:`interpreter_caches` lists the interpreter's caches that can be cleared
without changing behaviour — ``re``'s compiled patterns, ``linecache``,
importlib's path-finder caches, the method (type) cache — each with an
estimate of what it holds, so a planner clears only those that hold something.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from hivemind.agents.memtools import current_rss_bytes, malloc_trim, malloc_trim_available
from hivemind.swarm.record import frozen

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "HeapStats",
    "InterpCache",
    "arena_advice",
    "heap_stats",
    "interpreter_caches",
    "malloc_in_use",
    "trim_heap",
    "trim_reason",
]


@frozen
class HeapStats:
    """RSS, glibc's view of its heap, and tracemalloc's live bytes (-1: unknown)."""

    rss_bytes: int
    malloc_in_use: int  # uordblks + hblkhd: allocated by malloc (incl. mmapped blocks)
    malloc_free: int  # fordblks: free, kept inside the heap (fragmentation + top)
    malloc_releasable: int  # keepcost: free at the top of the main heap
    traced_live: int  # tracemalloc's current traced bytes, -1 when not tracing
    reason: str = ""  # why the malloc figures are -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rss_bytes": self.rss_bytes,
            "malloc_in_use": self.malloc_in_use,
            "malloc_free": self.malloc_free,
            "malloc_releasable": self.malloc_releasable,
            "traced_live": self.traced_live,
            "reason": self.reason,
        }


_mallinfo_fn: Any = None
_mallinfo_reason = ""
_mallinfo_lock = threading.Lock()


def _mallinfo2() -> Any:
    global _mallinfo_fn, _mallinfo_reason
    with _mallinfo_lock:
        if _mallinfo_fn is not None or _mallinfo_reason:
            return _mallinfo_fn
        if not sys.platform.startswith("linux"):
            _mallinfo_reason = f"no glibc on {sys.platform}"
            return None
        import ctypes

        class _Info(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena",
                    "ordblks",
                    "smblks",
                    "hblks",
                    "hblkhd",
                    "usmblks",
                    "fsmblks",
                    "uordblks",
                    "fordblks",
                    "keepcost",
                )
            ]

        try:
            fn = ctypes.CDLL("libc.so.6").mallinfo2
        except (OSError, AttributeError):
            _mallinfo_reason = "mallinfo2 unavailable (not glibc >= 2.33)"
            return None
        fn.restype = _Info
        fn.argtypes = []
        _mallinfo_fn = fn
        return fn


def malloc_in_use() -> int:
    """Bytes glibc has handed out (``uordblks + hblkhd``), or -1 where unknown; cheap."""
    fn = _mallinfo2()
    if fn is None:
        return -1
    try:
        info = fn()
    except Exception:
        return -1
    return int(info.uordblks + info.hblkhd)


def heap_stats() -> HeapStats:
    """RSS next to glibc's free-but-kept bytes and tracemalloc's live bytes; never raises."""
    import tracemalloc

    rss = current_rss_bytes()
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1
    fn = _mallinfo2()
    if fn is None:
        return HeapStats(rss, -1, -1, -1, traced, _mallinfo_reason)
    try:
        info = fn()
    except Exception as exc:
        return HeapStats(rss, -1, -1, -1, traced, f"mallinfo2 failed: {exc!r}")
    return HeapStats(
        rss_bytes=rss,
        malloc_in_use=int(info.uordblks + info.hblkhd),
        malloc_free=int(info.fordblks),
        malloc_releasable=int(info.keepcost),
        traced_live=traced,
    )


def trim_reason() -> str:
    """Why ``malloc_trim`` cannot run here, or "" when it can."""
    if malloc_trim_available():
        return ""
    return (
        "malloc_trim unavailable (not glibc)"
        if sys.platform.startswith("linux")
        else (f"malloc_trim unavailable on {sys.platform}")
    )


def trim_heap() -> int | None:
    """``malloc_trim(0)``; returns ``None`` so the caller measures what RSS gave back."""
    malloc_trim(0)
    return None


def arena_advice(stats: HeapStats, threads: int | None = None) -> str:
    """One line of ``MALLOC_ARENA_MAX`` advice when the heap looks fragmented by arenas, else ""."""
    if stats.malloc_free < 0 or stats.rss_bytes <= 0:
        return ""
    n = threading.active_count() if threads is None else threads
    if "MALLOC_ARENA_MAX" in os.environ or n < 2:
        return ""
    if stats.malloc_free > 0.25 * stats.rss_bytes and stats.malloc_free > 16 * 2**20:
        mb = stats.malloc_free / 2**20
        return (
            f"glibc keeps {mb:.0f} MB free inside its heap with {n} threads: try "
            "`hivemind run --malloc-arena-max 2` (fewer per-thread arenas fragment less; "
            "see benchmarks/results/reclaim.md)"
        )
    return ""


# --- the interpreter's caches -----------------------------------------------------


@frozen
class InterpCache:
    """One of the interpreter's caches: its name, entries, estimated bytes and how to clear it."""

    name: str
    entries: int
    est_bytes: int
    clear: Callable[[], None]


def _re_cache() -> InterpCache:
    import re

    cache = getattr(re, "_cache", {})
    n = len(cache)
    est = 0
    if n:  # key: (type, pattern text, flags); value: the compiled Pattern
        items = list(cache.items())[:32]
        per = 0
        for key, pat in items:
            per += (
                sys.getsizeof(pat) + sys.getsizeof(key) + sys.getsizeof(getattr(pat, "pattern", ""))
            )
            per += sys.getsizeof(getattr(pat, "groupindex", {}))
        est = sys.getsizeof(cache) + n * per // len(items)
    return InterpCache("interp:re", n, est, re.purge)


def _linecache() -> InterpCache:
    import linecache

    cache = linecache.cache
    n, est = len(cache), sys.getsizeof(cache)
    for entry in list(cache.values())[:64]:
        lines = entry[2] if len(entry) > 2 else []
        if isinstance(lines, list):
            est += sys.getsizeof(lines) + sum(map(sys.getsizeof, lines))
    if n > 64:
        est = est * n // 64
    return InterpCache("interp:linecache", n, est, linecache.clearcache)


def _path_caches() -> InterpCache:
    n, est = 0, 0
    for finder in list(sys.path_importer_cache.values()):
        cache = getattr(finder, "_path_cache", None)
        if isinstance(cache, set):
            n += len(cache)
            est += sys.getsizeof(cache) + sum(map(sys.getsizeof, cache))
    return InterpCache("interp:importlib", n, est, _clear_path_caches)


def _clear_path_caches() -> None:
    """``importlib.invalidate_caches()`` only marks the finders' directory listings stale;
    emptying them too frees them now (each finder refills on its next lookup)."""
    import importlib

    importlib.invalidate_caches()
    for finder in list(sys.path_importer_cache.values()):
        for attr in ("_path_cache", "_relaxed_path_cache"):
            if isinstance(getattr(finder, attr, None), set):
                setattr(finder, attr, set())


def _type_cache() -> InterpCache:
    # A fixed-size array of borrowed entries: clearing it frees nothing we can count.
    return InterpCache("interp:typecache", 0, 0, sys._clear_type_cache)


def interpreter_caches() -> list[InterpCache]:
    """The interpreter's clearable caches with what each holds now (estimates, bytes)."""
    out = []
    for probe in (_re_cache, _linecache, _path_caches, _type_cache):
        try:
            out.append(probe())
        except Exception:  # an interpreter without one of them
            continue
    return out
