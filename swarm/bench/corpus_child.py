"""One corpus run, inside the child interpreter that runs the app.

``python -m hivemind.swarm.bench.corpus_child NAME SECONDS TARGET_MB MODE [START_AT]``
runs corpus workload ``NAME`` (see :mod:`hivemind.swarm.bench.corpus_apps`)
and prints one JSON line (:func:`measure` documents its keys). ``MODE`` is
``none`` or ``watchdog`` (start :func:`~hivemind.swarm.bench.watchdog.start_watchdog`
first); hivemind's own guard, when wanted, is already attached at
interpreter start by the environment ``hivemind run`` sets. ``START_AT`` (a
``time.time()`` value) holds the measured window back until then, so the two
children of a same-core pair (:mod:`hivemind.swarm.bench.corpus_pairs`) measure
the same seconds; ``late_s`` says by how much a child missed it.

What is measured, here in the app's process:

* RSS every 50 ms (``/proc/self/statm``, read as the guard reads it, holding
  the GIL, in every side): timeline, seconds over target;
  the peak is ``VmHWM`` (the kernel's high-water mark, reset at the start
  of the run), so a spike between two samples still counts.
* Every collection's pause (``gc.callbacks``): count, total, p99.
* The whole process's CPU time over the run (``cpu_s``), kept in the raw runs
  (on this project's machines it tracked wall time within 1 %: the run-to-run
  spread is the host's speed, not other processes).
* The CPU time of the guard's own threads (``/proc/self/task/TID/stat``
  of threads named ``hivemind*`` or ``watchdog``) over the run.
* Reaction latency: for each upward crossing of the target, from the app's
  last allocation before the sample that saw it (the workload records when
  it allocates) to the start of the next full collection, whoever ran it.
* When the guard flagged the run infeasible (the runtime's, or its
  controller's, ``infeasible`` turning true), in seconds after RSS first
  went over the target.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import os
import sys
import threading
import time
from array import array
from typing import Any

__all__ = ["guard_cpu_s", "measure", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by nearest rank; 0.0 if empty."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def _rss_mb() -> float:
    # The guard's own GIL-holding read: a Python file read gives the GIL up and, beside
    # a CPU-bound app, waits a switch interval to get it back; every side pays the same.
    from hivemind.agents.memtools import current_rss_mb

    return current_rss_mb()


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_hwm() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _is_guard(name: str) -> bool:
    from hivemind.swarm.bench.watchdog import WATCHDOG_THREAD

    if name == WATCHDOG_THREAD:
        return True
    return name.startswith("hivemind") and name != "hivemind-bench-sampler"


def _cpu_s(stat_path: str) -> float:
    """CPU seconds of a /proc ``stat`` file (0.0 if it is gone)."""
    from hivemind.swarm.procs import cpu_seconds

    try:
        with open(stat_path, "rb") as f:
            return cpu_seconds(f.read())
    except (OSError, IndexError, ValueError):
        return 0.0


def guard_cpu_s() -> float:
    """CPU seconds used so far by the guard's threads in this process, and by its
    watcher process (:mod:`~hivemind.swarm.target.watcher`) if it runs one."""
    total = 0.0
    for t in threading.enumerate():
        if t.native_id is not None and _is_guard(t.name):
            total += _cpu_s(f"/proc/self/task/{t.native_id}/stat")
    watcher = getattr(_runtime(), "watcher", None)
    return total + (watcher.cpu_s() if watcher is not None else 0.0)


def _runtime() -> Any:
    """The guard attached to this process, or None."""
    try:
        from hivemind.swarm.target.attach import current_runtime
    except ImportError:
        return None
    return current_runtime()


def _guard_stats() -> dict[str, int]:
    """The attached runtime's counters (commands, samples published, collections...) and
    its actions by kind; empty without one."""
    rt = _runtime()
    if rt is None:
        return {}
    out = {k: int(v) for k, v in getattr(rt, "stats", {}).items()}
    for entry in list(getattr(rt, "actions_log", ())):
        key = "action " + str(entry[2]).split(" ", 1)[0]
        out[key] = out.get(key, 0) + 1
    return out


def _flagged() -> bool:
    rt = _runtime()
    if rt is None:
        return False
    flag = getattr(rt, "infeasible", None)
    if flag is None:  # the in-target controller's verdict, where it keeps one
        flag = getattr(getattr(rt, "controller", None), "infeasible", None)
    if callable(flag):
        flag = flag()
    return bool(flag)


class _Probe:
    """The sampler thread and the GC callback."""

    def __init__(self, target_mb: float) -> None:
        self.target_mb = target_mb
        self.t0 = time.monotonic()
        self.timeline: list[tuple[float, float]] = []
        self.over_s = 0.0
        self.first_over: float | None = None
        self.flagged_at: float | None = None
        self.pauses_ms = array("d")
        self.full_starts = array("d")
        self._gc_start = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hivemind-bench-sampler")
        self._thread.daemon = True

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
            if info.get("generation") == 2:
                self.full_starts.append(time.monotonic())
        else:
            self.pauses_ms.append((now - self._gc_start) * 1000)

    def __enter__(self) -> _Probe:
        gc.callbacks.append(self._on_gc)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            rss = _rss_mb()
            if self.timeline and rss > self.target_mb:
                self.over_s += now - self.t0 - self.timeline[-1][0]
            if rss > self.target_mb and self.first_over is None:
                self.first_over = now
            if self.flagged_at is None and _flagged():
                self.flagged_at = now
            self.timeline.append((round(now - self.t0, 3), round(rss, 2)))


def _reactions(probe: _Probe, allocs: array[float]) -> tuple[list[float], int]:
    """Upward crossings of the target: (latencies ms to the next full collection, unanswered)."""
    latencies: list[float] = []
    unanswered = 0
    prev = 0.0
    for t, rss in probe.timeline:
        if rss > probe.target_mb >= prev:
            seen = probe.t0 + t
            i = bisect.bisect_right(allocs, seen) - 1
            if i >= 0:
                cause = allocs[i]
                j = bisect.bisect_left(probe.full_starts, cause)
                if j < len(probe.full_starts):
                    latencies.append((probe.full_starts[j] - cause) * 1000)
                else:
                    unanswered += 1
        prev = rss
    return latencies, unanswered


def measure(
    name: str, seconds: float, target_mb: float, mode: str, start_at: float | None = None
) -> dict[str, Any]:
    """Run corpus workload ``name`` once (from ``start_at``, a ``time.time()``, if
    given) and return what was measured.

    Keys: ``units``, ``duration_s``, ``cpu_s`` (the whole process's), ``start_rss_mb``,
    ``peak_rss_mb``, ``time_over_target_s``, ``gc_collections``, ``gc_pause_ms_total``,
    ``gc_pause_p99_ms``, ``guard_cpu_s``, ``guard_cpu_pct`` (of one core),
    ``reaction_ms`` (list), ``unanswered``, ``flagged_after_s`` (or None),
    ``timeline``, ``late_s`` (how far past ``start_at`` the window began, else 0),
    ``cpus`` (the cores it was allowed), ``guard_stats`` (the attached runtime's
    counters and actions by kind, if any), ``error`` (or None).
    """
    from hivemind.swarm.bench import corpus_apps

    fn = getattr(corpus_apps, name, None)
    if fn is None or name.startswith("_"):
        return {"error": f"no corpus workload {name!r}"}
    if mode == "watchdog":
        from hivemind.swarm.bench.watchdog import start_watchdog

        start_watchdog(target_mb)
    elif mode != "none":
        return {"error": f"unknown mode {mode!r}"}
    gc.collect()
    start_rss = _rss_mb()
    late = 0.0
    if start_at is not None:
        late = max(0.0, time.time() - start_at)
        time.sleep(max(0.0, start_at - time.time()))
    cpu0 = guard_cpu_s()
    _reset_hwm()
    error: str | None = None
    units: object = 0
    with _Probe(target_mb) as probe:
        t, p0 = time.monotonic(), time.process_time()
        try:
            units = fn(seconds, lambda n: None)
        except Exception as exc:
            error = f"{name} raised {type(exc).__name__}: {exc}".splitlines()[0][:300]
        duration = time.monotonic() - t
        process_cpu = time.process_time() - p0
    peak = max(_hwm_mb(), max((m for _, m in probe.timeline), default=0.0))
    cpu = guard_cpu_s() - cpu0
    latencies, unanswered = _reactions(probe, corpus_apps.ALLOC_TIMES)
    flagged = None
    if probe.flagged_at is not None:
        flagged = probe.flagged_at - (probe.first_over or probe.flagged_at)
    return {
        "units": units if isinstance(units, int) else 0,
        "duration_s": duration,
        "cpu_s": process_cpu,
        "start_rss_mb": start_rss,
        "peak_rss_mb": peak,
        "time_over_target_s": probe.over_s,
        "gc_collections": len(probe.pauses_ms),
        "gc_pause_ms_total": sum(probe.pauses_ms),
        "gc_pause_p99_ms": percentile(list(probe.pauses_ms), 0.99),
        "guard_cpu_s": cpu,
        "guard_cpu_pct": 100.0 * cpu / duration if duration > 0 else 0.0,
        "reaction_ms": latencies,
        "unanswered": unanswered,
        "flagged_after_s": flagged,
        "timeline": probe.timeline,
        "late_s": late,
        "guard_stats": _guard_stats(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "error": error,
    }


def _main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(
            "usage: python -m hivemind.swarm.bench.corpus_child"
            " NAME SECONDS TARGET_MB MODE [START_AT]"
        )
        return 2
    start_at = float(argv[4]) if len(argv) == 5 else None
    out = measure(argv[0], float(argv[1]), float(argv[2]), argv[3], start_at)
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(out), flush=True)
    return 0 if out.get("error") is None else 1


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
