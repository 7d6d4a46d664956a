"""Cheap process-memory primitives: resident set size and ``malloc_trim``.

Everything here is safe to call from a monitor thread many times a second:
reading ``/proc/self/statm`` costs ~15 µs on Linux, so the fast path avoids
psutil (whose ``memory_info()`` costs about the same but allocates more);
psutil is the fallback on other platforms.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from typing import Any

from hivemind.swarm.vocab import MB

__all__ = [
    "MB",
    "current_rss_bytes",
    "current_rss_mb",
    "malloc_trim",
    "malloc_trim_available",
    "peak_rss_bytes",
]

log = logging.getLogger(__name__)

"""Bytes in a mebibyte; every ``*_mb`` figure in this package uses it."""

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = "/proc/self/statm"


def _rss_from_statm() -> int | None:
    try:
        with open(_STATM, "rb") as fh:
            fields = fh.read().split()
        return int(fields[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


@lru_cache(maxsize=1)
def _psutil_process() -> Any:
    import psutil  # deferred: only needed where /proc is missing

    return psutil.Process()


def current_rss_bytes() -> int:
    """Return this process's resident set size in bytes.

    Costs one small file read (~15 µs) on Linux; falls back to
    ``psutil.Process().memory_info().rss`` elsewhere. Never raises: returns 0
    if neither source works (the caller treats 0 as "unknown").
    """
    rss = _rss_from_statm()
    if rss is not None:
        return rss
    try:
        return int(_psutil_process().memory_info().rss)
    except Exception:  # monitor threads must never die on a sampling error
        log.debug("could not read RSS", exc_info=True)
        return 0


def current_rss_mb() -> float:
    """Return :func:`current_rss_bytes` in MiB."""
    return current_rss_bytes() / MB


def peak_rss_bytes() -> int:
    """Return the process's peak RSS (``ru_maxrss``) in bytes, or 0 if unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS reports bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


@lru_cache(maxsize=1)
def _libc_malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    # Imported here: ctypes (and ctypes.util, which pulls in subprocess and
    # tempfile) would otherwise cost every guarded process a few MB.
    import ctypes

    try:
        try:
            libc = ctypes.CDLL("libc.so.6")  # glibc's soname; no ldconfig run
        except OSError:
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def malloc_trim_available() -> bool:
    """Return True if glibc's ``malloc_trim`` can be called in this process."""
    return _libc_malloc_trim() is not None


def malloc_trim(pad: int = 0) -> bool:
    """Ask glibc to return free heap pages to the OS.

    Returns True if glibc reported that memory was released, False if
    nothing was released or ``malloc_trim`` is unavailable (non-glibc libc,
    non-Linux). Costs from microseconds to a few milliseconds, proportional
    to the heap size; it only helps after large frees, since CPython's own
    small-object arenas are released by CPython itself.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    fn = _libc_malloc_trim()
    if fn is None:
        return False
    try:
        return bool(fn(pad))
    except Exception:  # a foreign call failing must not take the host down
        log.debug("malloc_trim failed", exc_info=True)
        return False
