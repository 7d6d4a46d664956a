"""Cheap process-memory primitives: resident set size and ``malloc_trim``.

Everything here is safe to call from a monitor thread many times a second:
reading ``/proc/self/statm`` (kept open, read with the GIL held) costs a few µs
on Linux, so the fast path avoids psutil (whose ``memory_info()`` costs about
the same but allocates more); psutil is the fallback on other platforms.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache

from hivemind.swarm.lazylog import get_logger
from hivemind.swarm.vocab import MB

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MB",
    "current_rss_bytes",
    "current_rss_mb",
    "malloc_trim",
    "malloc_trim_available",
    "peak_rss_bytes",
    "pread_holding_gil",
]

log = get_logger(__name__)  # imports logging only to say something

"""Bytes in a mebibyte; every ``*_mb`` figure in this package uses it."""

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = "/proc/self/statm"
_statm_fd = -1  # kept open: one read per call instead of open + read + close
_pread: Any = None  # libc's pread through ctypes.PyDLL, which keeps the GIL (see below)
_pread_tried = False


def _reset_after_fork() -> None:
    """A forked child's inherited descriptor still names the parent's statm: reopen."""
    global _statm_fd
    if _statm_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(_statm_fd)
    _statm_fd = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _gil_holding_pread() -> Any:
    """libc ``pread`` called *without* releasing the GIL, or None.

    Every Python file read releases the GIL, and a thread that releases it
    next to a busy app thread waits a whole switch interval (5 ms) to get it
    back: open + read + close of statm took ~26 ms in a guard thread beside a
    CPU-bound app. Reading 40 bytes of procfs takes microseconds, so holding
    the GIL for it costs the app nothing and the guard its reaction time.
    """
    global _pread, _pread_tried
    if not _pread_tried:
        _pread_tried = True
        try:
            import ctypes  # ~0.4 MB; malloc_trim loads it anyway

            fn = ctypes.PyDLL(None).pread
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
            fn.restype = ctypes.c_ssize_t
            _pread = (fn, ctypes.create_string_buffer)
        except (ImportError, OSError, AttributeError):
            _pread = None
    return _pread


def pread_holding_gil(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``fd`` (a small procfs file), read
    without giving the GIL up where libc allows it (see :func:`_gil_holding_pread`);
    raises OSError if nothing could be read."""
    pread = _gil_holding_pread()
    if pread is None:
        return os.pread(fd, size, 0)
    fn, make_buf = pread
    buf = make_buf(size)
    n = fn(fd, buf, size, 0)
    if n <= 0:
        raise OSError(f"pread of fd {fd} returned nothing")
    return bytes(buf.raw[:n])


def _rss_from_statm() -> int | None:
    global _statm_fd
    try:
        if _statm_fd < 0:
            _statm_fd = os.open(_STATM, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        data = pread_holding_gil(_statm_fd, 64)
        return int(data.split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        _reset_after_fork()  # try a fresh descriptor next time
        return None


@lru_cache(maxsize=1)
def _psutil_process() -> Any:
    import psutil  # deferred: only needed where /proc is missing

    return psutil.Process()


def current_rss_bytes() -> int:
    """Return this process's resident set size in bytes.

    Costs one small ``pread`` of a kept-open ``/proc/self/statm`` (a few µs,
    GIL held) on Linux; falls back to ``psutil.Process().memory_info().rss``
    elsewhere. Never raises: returns 0 if neither source works (the caller
    treats 0 as "unknown").
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
