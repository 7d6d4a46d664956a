"""``hivemind run --explain``: print what would be reclaimable, without guarding.

The child's ``sitecustomize`` calls :func:`install` when ``HIVEMIND_EXPLAIN=1``
(instead of attaching the guard). It starts ``tracemalloc`` (one frame, so
RSS can be set against the bytes Python really holds live; this slows the
app, which is why it is an explain run) and prints the report to stderr at
exit, and also after ``HIVEMIND_EXPLAIN_AFTER`` seconds for a program that
does not exit. ``HIVEMIND_EXPLAIN_JSON=PATH`` also writes the report as JSON.
Nothing here raises into the app.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
from typing import Any

from hivemind.swarm.env import env_float, env_str

__all__ = ["install", "report"]

_done = threading.Lock()


def report(final: bool = True) -> str:
    """Scan now and return the explain text (also written as JSON if asked)."""
    from hivemind.swarm.target.heap import heap_stats
    from hivemind.swarm.target.planner import Reclaimer, cache_row

    rec = Reclaimer()
    text = rec.explain()
    path = env_str("explain_json")
    if path:
        data: dict[str, Any] = {
            "final": final,
            "candidates": [cache_row(c) for c in rec.candidates()],
            "heap": heap_stats().as_dict(),
            "scan_ms": rec.discovery.scan_ms,
            "entry_point_errors": rec.entry_point_errors,
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
    return text


def _emit(final: bool) -> None:
    try:
        text = report(final)
    except Exception as exc:  # never into the app
        text = f"hivemind explain failed: {exc!r}"
    print(text, file=sys.stderr, flush=True)


def _at_exit() -> None:
    if _done.acquire(blocking=False):
        _emit(True)


def install() -> None:
    """Start tracemalloc and arrange for the report at exit (and after a delay)."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
    atexit.register(_at_exit)
    after = env_float("explain_after", 0.0)
    if after > 0:
        timer = threading.Timer(after, _emit, args=(False,))
        timer.daemon = True
        timer.name = "hivemind-explain"
        timer.start()
