"""The corpus: small models of apps hivemind was not designed for.

Each function here is a workload (``run(seconds, report) -> int``, see
:mod:`hivemind.swarm.bench.workloads`) that models a kind of Python program
someone else wrote, with the memory habit that makes it hard to guard. None
of them sleeps: every second of a run is the app's own work, so whatever a
guard costs shows up as units of work lost. Each calls :func:`mark_alloc`
when it allocates, so the harness can measure reaction latency from the
allocation that crossed a threshold to the guard's action.

Growth is paced by elapsed time, not by units done, so an app's unguarded
peak does not depend on how fast the (shared) machine happens to be; the
guard's cost shows up in units.

* :func:`tui`: widget trees with parent/child links (every old tree is
  cyclic garbage) and GC thresholds raised to ``(50000, 20, 20)``.
* :func:`batch`: ``gc.disable()`` and reference cycles left behind; the job
  collects on its own only above :data:`BATCH_CAP_MB` (standing in for the
  OOM kill that would come), so a run cannot eat the machine.
* :func:`fragment`: a pool of worker threads, one at a time, build batches of
  mid-size strings (malloc, not pymalloc) and keep a few scattered
  survivors: every thread's malloc arena keeps its high-water mark, and only
  ``malloc_trim`` gives the holes back.
* :func:`memo`: a module-level ``functools.lru_cache(maxsize=None)`` that
  only grows (the collector can free nothing there).
* :func:`growth`: live data growing past the target (infeasible).
* :func:`bursty`: short bursts of large temporary graphs (cyclic), default
  thresholds.
* :func:`cpu`: a CPU-bound loop with no garbage to speak of (pure overhead).
* :func:`mypy_tool`: a real tool nobody here wrote, ``mypy`` (in-process,
  ``mypy.api.run``), over :data:`MYPY_FILES` of this repository.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import threading
import time
import types
from array import array
from pathlib import Path

from hivemind.swarm.bench.workloads import Report

__all__ = [
    "ALLOC_TIMES",
    "BATCH_CAP_MB",
    "MYPY_FILES",
    "batch",
    "bursty",
    "cpu",
    "fragment",
    "growth",
    "mark_alloc",
    "memo",
    "mypy_tool",
    "tui",
]

_MB = 1024 * 1024
ALLOC_TIMES: array[float] = array("d")
"""``time.monotonic()`` of each allocation event (bounded: see :func:`mark_alloc`)."""
_ALLOC_CAP = 400_000


def mark_alloc() -> None:
    """Record that the app just allocated (the harness reads :data:`ALLOC_TIMES`)."""
    if len(ALLOC_TIMES) < _ALLOC_CAP:
        ALLOC_TIMES.append(time.monotonic())


def _rss_mb() -> float:
    from hivemind.agents.memtools import current_rss_mb

    return current_rss_mb()


# -- (a) TUI-like: widget trees, raised thresholds ------------------------------


class _Node:
    """A widget: parent/child links make every dropped tree cyclic garbage."""

    __slots__ = ("children", "parent", "style", "text")

    def __init__(self, parent: _Node | None, text: str) -> None:
        self.parent = parent
        self.children: list[_Node] = []
        self.text = text
        self.style = {"fg": "white", "bg": "black", "pad": (0, 1)}
        if parent is not None:
            parent.children.append(self)


def _build_tree(frame: int, rows: int, cells: int) -> _Node:
    root = _Node(None, f"screen {frame}")
    for r in range(rows):
        row = _Node(root, f"row {r} of frame {frame}")
        for c in range(cells):
            _Node(row, f"cell {r}.{c} frame {frame} " + "x" * (c % 24))
    return root


def _render(node: _Node, out: list[str], depth: int = 0) -> None:
    out.append("  " * depth + node.text)
    for child in node.children:
        _render(child, out, depth + 1)


def tui(seconds: float, report: Report) -> int:
    """Re-render a screen every frame, keeping the last few screens for "undo".

    Units: frames rendered.
    """
    old = gc.get_threshold()
    gc.set_threshold(50_000, 20, 20)  # "for speed"
    history: list[_Node] = []
    frame = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            frame += 1
            tree = _build_tree(frame, 40, 16)
            mark_alloc()
            lines: list[str] = []
            _render(tree, lines)
            history.append(tree)
            if len(history) > 8:
                history.pop(0)  # the old screen: a cycle the collector must find
            if frame % 50 == 0:
                report(frame)
    finally:
        history.clear()
        gc.set_threshold(*old)
    return frame


# -- (b) batch job with gc.disable() -----------------------------------------------

BATCH_CAP_MB = 1200.0
"""The batch job collects by itself above this RSS (the OOM kill it stands for)."""


class _Record:
    __slots__ = ("batch", "fields", "payload")

    def __init__(self, batch: list[_Record], i: int) -> None:
        self.batch = batch  # back link: the batch and its records form a cycle
        self.fields = {"id": i, "name": f"record-{i}", "score": i * 0.5}
        self.payload = "p" * 200


def batch(seconds: float, report: Report) -> int:
    """Transform batches of records with the collector off; units: records.

    Each batch is a cycle (records point back at their batch list) that
    nothing but an explicit collection frees. Garbage arrives at a fixed
    rate (about 250 MB/s of batches); when the job has made its quota for
    the elapsed time it does useful work on a small live set instead.
    """
    gc.disable()
    done = 0
    started = time.monotonic()
    made_mb = 0.0
    per_batch_mb = 500 * 0.55 / 1024  # ~0.55 KB a record, 500 records a batch
    live = [_Record([], i) for i in range(2000)]
    self_collections = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if made_mb < 250.0 * elapsed:
                b: list[_Record] = []
                b.extend(_Record(b, i) for i in range(500))
                mark_alloc()
                total = sum(r.fields["score"] for r in b)  # type: ignore[misc]
                made_mb += per_batch_mb
                done += len(b) + int(total) * 0
            else:
                for r in live[:500]:
                    r.fields["score"] = r.fields["score"] + 1  # type: ignore[operator]
                done += 500
            if done % 50_000 < 500:
                report(done)
                if _rss_mb() > BATCH_CAP_MB:
                    gc.collect()
                    self_collections += 1
    finally:
        live.clear()  # the collector stays off: the job ends here
    return done + self_collections * 0


# -- (c) C-heap fragmentation ------------------------------------------------------


def fragment(seconds: float, report: Report) -> int:
    """A pool of 4 worker threads serving requests one at a time (a lock). A
    request builds a few hundred mid-size strings (1-16 KB: malloc, not
    pymalloc); four times a second one builds a big report (~25 MB of them)
    and keeps every 40th string in a bounded store of survivors. Each
    thread's malloc arena keeps its high-water mark, pinned by scattered
    survivors: only ``malloc_trim`` gives the holes back. Units: requests.
    """
    store: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    done = [0]
    started = time.monotonic()
    reports = [0]

    def strings(n: int, salt: int) -> list[str]:
        return [chr(65 + (i % 26)) * (1024 + ((i * 7919 + salt) % 15) * 1024) for i in range(n)]

    def worker(w: int) -> None:
        n = 0
        while not stop.is_set():
            with lock:
                elapsed = time.monotonic() - started
                if elapsed >= seconds:
                    stop.set()
                    return
                n += 1
                if reports[0] < elapsed * 4:
                    reports[0] += 1
                    items = strings(3000, n * 104729 + w)
                    mark_alloc()
                    store.extend(items[::40])
                    if len(store) > 600:
                        del store[: len(store) - 600]
                else:
                    items = strings(150, n + w)
                checksum = sum(len(s) for s in items)
                del items
                done[0] += 1 + checksum * 0
                if done[0] % 100 == 0:
                    report(done[0])
            time.sleep(0)  # let the next worker take the lock

    threads = [threading.Thread(target=worker, args=(w,), name=f"app-worker-{w}") for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.clear()
    return done[0]


# -- (d) memo cache that only grows -------------------------------------------------


def _memo_module() -> types.ModuleType:
    """``memo_app.py`` loaded as the top-level module ``memo_app`` (once)."""
    mod = sys.modules.get("memo_app")
    if mod is None:
        path = Path(__file__).with_name("memo_app.py")
        spec = importlib.util.spec_from_file_location("memo_app", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["memo_app"] = mod
        spec.loader.exec_module(mod)
    return mod


def memo(seconds: float, report: Report) -> int:
    """Look up rows through ``memo_app.render_row`` (a module-level
    ``lru_cache(maxsize=None)`` in the app's own module): mostly hot keys, and new keys at a
    steady rate, ~60 MB of cache over the run whatever its length. Units: lookups.
    """
    render_row = _memo_module().render_row
    render_row.cache_clear()
    done = 0
    new_keys = 0
    started = time.monotonic()
    per_s = 60 * _MB / 2300 / max(seconds, 0.1)
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if new_keys < per_s * elapsed:
                for _ in range(50):
                    new_keys += 1
                    render_row(1_000_000 + new_keys)
                mark_alloc()
            for k in range(200):
                render_row(k)  # the hot set: hits, unless the cache was cleared
            done += 200
            if done % 20_000 == 0:
                report(done)
    finally:
        render_row.cache_clear()
    return done


# -- (e) live data growing past the target --------------------------------------------


def growth(seconds: float, report: Report) -> int:
    """An in-memory index that only grows (~100 MB of live rows over the run,
    whatever its length); units: rows scanned. Nothing here is garbage: no
    guard can hold a target below it.
    """
    rows: list[bytes] = []
    done = 0
    started = time.monotonic()
    row_bytes = 4096
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(100 * _MB * elapsed / seconds / row_bytes) - len(rows)
            if due > 0:
                rows.extend(b"r" * row_bytes for _ in range(due))
                mark_alloc()
            total = 0
            for r in rows[-500:]:
                total += len(r)
            done += 500 + total * 0
            if done % 50_000 == 0:
                report(done)
    finally:
        rows.clear()
    return done


# -- (f) bursty temporary working sets --------------------------------------------------


def _rebuild_graph(n: int) -> int:
    """Build a graph of ``n`` nodes with back links (cyclic), walk it, drop it.

    Its own function, so that nothing outlives the call: a node left in a
    local of the request loop would keep the whole chain alive until the next
    rebuild, and the "temporary" graph would be live data.
    """
    graph: list[list[object]] = []
    for i in range(n):
        node: list[object] = [i, f"node {i}", None]
        if graph:
            node[2] = graph[-1]
            graph[-1].append(node)  # back link: a cycle per pair
        graph.append(node)
    mark_alloc()
    return sum(1 for node in graph if node[2] is not None)


def bursty(seconds: float, report: Report) -> int:
    """A request handler that, after every 0.5 s of requests, rebuilds a
    temporary graph of 80k nodes with back links (cyclic), walks it and drops
    it (:func:`_rebuild_graph`). Default thresholds. Units: requests served
    (each formats a small record); the rebuilds are the cost of doing business.
    """
    done = 0
    started = time.monotonic()
    next_burst = 0.0
    while (elapsed := time.monotonic() - started) < seconds:
        if elapsed >= next_burst:
            _rebuild_graph(80_000)
            next_burst = time.monotonic() - started + 0.5  # after 0.5 s of requests
        for _ in range(20):
            req = {"path": f"/item/{done % 1000}", "args": [done, done + 1]}
            done += 1 if req["path"] else 0
        if done % 10_000 == 0:
            report(done)
    return done


# -- (g) CPU-bound loop ---------------------------------------------------------------


def cpu(seconds: float, report: Report) -> int:
    """Arithmetic and small string formatting, no garbage cycles, no growth.
    Units: iterations of 1,000 steps.
    """
    done = 0
    acc = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i in range(1000):
            acc = (acc * 31 + i) % 1_000_003
        acc += len(f"{acc:x}")
        done += 1
        if done % 500 == 0:
            report(done)
    return done


# -- a real tool: mypy ------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent.parent
MYPY_FILES: tuple[str, ...] = ("swarm", "agents", "coordinator", "hooks")
"""What the ``mypy`` workload checks: this repository's four packages, as in issue 11."""


def mypy_tool(seconds: float, report: Report) -> int:
    """Run ``mypy --strict`` over :data:`MYPY_FILES` once (``seconds`` is ignored:
    the unit is one whole check, and the harness compares wall times).
    Returns 1 when mypy ran (whatever it found), else raises.
    """
    from mypy import api

    mark_alloc()
    args = [
        "--strict",
        "--no-incremental",
        "--cache-dir",
        "/dev/null",
        "--ignore-missing-imports",
        "--follow-imports",
        "silent",
        *[str(_ROOT / f) for f in MYPY_FILES],
    ]
    _out, err, status = api.run(args)
    if status not in (0, 1):
        raise RuntimeError(f"mypy failed: {err.strip()[:200]}")
    report(1)
    return 1
