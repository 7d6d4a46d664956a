"""Choosing what to give back under pressure, one action at a time, each measured.

:class:`Reclaimer` gathers the candidates — the app's ``lru_cache``s found by
:mod:`~hivemind.swarm.target.discover`, the interpreter's own caches, the
actions registered through :mod:`~hivemind.swarm.target.reclaim` (API,
``reclaimable()``, entry points) — each with expected bytes and an expected
cost of rebuilding, and clears them best first until enough is freed.

**Order.** ``score = expected bytes / (1 + cost)``, highest first. A
discovered cache's cost is ``hit rate x (1 + log10(1 + calls/s since the
last look))``: a cold cache costs at most its hit rate, a hot one that
serves most calls costs several times more, so cold, large caches with a low
hit rate go first. Anything marked keep, smaller than ``min_bytes``, or that
freed nothing measurable twice in a row is never chosen.

**When.** :meth:`Reclaimer.due` is the O(1) check the runtime may call on every
sample (:meth:`Reclaimer.observe` also runs the scan it asks for): it walks
every module when pressure first rises (again at most once a minute; a rise in
between walks only modules imported since), and the new modules when
``len(sys.modules)`` changed while under pressure (at most once a second). Each
look also re-reads every known cache's counters and size.
The in-target controller decides when to reclaim: it gets the candidates as
options (see :meth:`hivemind.swarm.target.wiring.ReclaimHook.options`) and
the runtime runs what it chose with :meth:`Reclaimer.run`; with the
controller off, :meth:`Reclaimer.reclaim` clears the best until enough is freed.

Nothing here raises into the app; ``HIVEMIND_DISCOVER=0`` turns discovery
off (the registered actions and the interpreter caches remain).
"""

from __future__ import annotations

import math
import threading
import time

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.record import field, record
from hivemind.swarm.target.discover import Discovery, discover_enabled, keep_patterns
from hivemind.swarm.target.heap import (
    heap_stats,
    interpreter_caches,
    malloc_in_use,
    trim_reason,
)
from hivemind.swarm.target.reclaim import (
    ReclaimRegistry,
    call_guarded,
    default_registry,
    load_entry_points,
)

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Candidate", "Outcome", "Reclaimer"]

KIB = 1024
FULL_SCAN_EVERY_S = 60.0  # a rise in pressure walks every module again at most this often
_INTERP_COST = {
    "interp:re": 0.2,
    "interp:linecache": 0.05,
    "interp:importlib": 0.5,
    "interp:typecache": 0.1,
}


@record
class Candidate:
    """One thing that can be cleared, with what it is expected to free and cost."""

    name: str
    kind: str  # "lru", "interp", "plugin"
    expected_bytes: int  # -1: unknown
    cost: float
    keep: bool = False
    entries: int = -1
    hit_rate: float = -1.0
    run: Any = None  # () -> int | None

    @property
    def score(self) -> float:
        return max(0, self.expected_bytes) / (1.0 + self.cost)


@record
class Outcome:
    """What one reclaim gave back, and what the action itself said it freed.

    ``bytes_freed`` is the larger of the RSS drop and the drop in what glibc
    has handed out (``mallinfo2``): memory back with the OS, or back with the
    C allocator, which keeps it until ``malloc_trim`` (reported as its own
    outcome, with its RSS drop).
    """

    name: str
    expected_bytes: int
    bytes_freed: int
    reported_bytes: int | None
    duration_ms: float
    ok: bool
    error: str = ""
    ts: float = field(default_factory=time.time)

    def as_result(self) -> dict[str, Any]:
        """The wire form (an ``ActionResult`` of kind ``reclaim``)."""
        return {
            "kind": "malloc_trim" if self.name == "malloc_trim" else "reclaim",
            "name": self.name,
            "bytes_freed": self.bytes_freed,
            "duration_ms": round(max(0.0, self.duration_ms), 3),
            "ok": self.ok,
            "expected_bytes": self.expected_bytes,
            "error": self.error[:200],
        }


class Reclaimer:
    """Discovery, candidates and measured reclaims for one process (thread-safe)."""

    def __init__(
        self,
        registry: ReclaimRegistry | None = None,
        *,
        discover: bool | None = None,
        min_bytes: int = 256 * KIB,
        timeout_s: float = 1.0,
        entry_points: bool = True,
    ) -> None:
        self.registry = registry or default_registry()
        self.discovery = Discovery()
        self.discover = discover_enabled() if discover is None else discover
        self.min_bytes = min_bytes
        self.timeout_s = timeout_s
        self.keep = keep_patterns()
        self.history: list[Outcome] = []  # the latest outcomes, newest last
        self.total_freed = 0
        self.entry_point_errors: list[str] = []
        self._want_entry_points = entry_points
        self._pressured = False
        self._last_scan = 0.0
        self._last_full = 0.0
        self._futile: dict[str, int] = {}  # name -> reclaims in a row that freed nothing
        self._lock = threading.RLock()  # candidates, history, futility
        self._scan_lock = threading.Lock()  # the walk; always taken before _lock
        self._candidates: list[Candidate] = []
        self.summary = (0, 0)  # (caches found, reclaimable bytes) at the last scan

    # -- when to look ------------------------------------------------------------
    def due(self, pressured: bool, now: float | None = None) -> bool | None:
        """The O(1) per-sample check: ``None`` (no scan due), ``True`` (walk every
        module) or ``False`` (walk only the modules imported since the last look)."""
        now = time.monotonic() if now is None else now
        rising = pressured and not self._pressured
        self._pressured = pressured
        if not pressured:
            return None
        if rising:  # a full walk at most once a minute; in between, only new modules
            full = not self._last_full or now - self._last_full >= FULL_SCAN_EVERY_S
            if full:
                self._last_full = now
            self._last_scan = now
            return full
        if self.discover and self.discovery.modules_changed() and now - self._last_scan >= 1.0:
            self._last_scan = now
            return False
        return None

    def observe(self, pressured: bool, now: float | None = None) -> bool:
        """:meth:`due`, then the scan it asks for, here and now; True if it scanned."""
        full = self.due(pressured, now)
        if full is None:
            return False
        self.scan(full=full)
        return True

    def prepare(self) -> None:
        """Load the installed entry points now (file reads: call it off the hot path)."""
        with self._scan_lock:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        if self._want_entry_points:
            self._want_entry_points = False
            _, self.entry_point_errors = load_entry_points(self.registry)

    def scan(self, *, full: bool = True) -> list[Candidate]:
        """Find caches (all modules, or the new ones) and rebuild the candidate list.

        Safe beside :meth:`run` in another thread: the walk holds its own lock,
        and the candidates are swapped in at the end.
        """
        with self._scan_lock:
            self._load_entry_points()
            if self.discover:
                try:
                    self.discovery.scan(only_new=not full)
                except Exception:
                    self.discovery.errors += 1
            self._last_scan = time.monotonic()
            return self._rebuild_locked()

    def _rebuild_locked(self) -> list[Candidate]:
        cands = self._build()
        with self._lock:
            self._candidates = cands
        return list(cands)

    def candidates(self) -> list[Candidate]:
        """The last scan's candidates, best first (keep ones last)."""
        with self._lock:
            return list(self._candidates)

    def _build(self) -> list[Candidate]:
        out: list[Candidate] = []
        for c in self.discovery.refresh(self.keep) if self.discover else []:
            cost = c.hit_rate * (1.0 + math.log10(1.0 + c.calls_per_s))
            wrapper = c.ref
            out.append(
                Candidate(
                    name=f"cache:{c.name}",
                    kind="lru",
                    expected_bytes=c.est_bytes,
                    cost=round(cost, 3),
                    keep=c.keep,
                    entries=c.currsize,
                    hit_rate=round(c.hit_rate, 3),
                    run=_clear_lru(wrapper),
                )
            )
        for ic in interpreter_caches():
            out.append(
                Candidate(
                    ic.name,
                    "interp",
                    ic.est_bytes,
                    _INTERP_COST.get(ic.name, 0.5),
                    entries=ic.entries,
                    run=ic.clear,
                )
            )
        for spec in self.registry.specs():
            expected = -1
            if spec.estimate is not None:
                got = call_guarded(f"estimate:{spec.name}", spec.estimate, self.timeout_s)
                if not got.error and isinstance(got.value, int):
                    expected = got.value
            out.append(
                Candidate(spec.name, "plugin", expected, spec.cost, keep=spec.keep, run=spec.fn)
            )
        out.sort(key=lambda c: (c.keep, -c.score))
        self.summary = (
            sum(1 for c in out if c.kind == "lru"),
            sum(max(0, c.expected_bytes) for c in out if not c.keep),
        )
        return out

    # -- reclaiming --------------------------------------------------------------
    def eligible(self) -> list[Candidate]:
        """Candidates the planner may clear now, best first."""
        return [
            c
            for c in self.candidates()
            if not c.keep and self._futile.get(c.name, 0) < 2 and self._worth(c)
        ]

    def _worth(self, c: Candidate) -> bool:
        if c.kind == "plugin" and c.expected_bytes < 0:
            return True  # it does not say: try it, then learn from what it freed
        return c.expected_bytes >= self.min_bytes

    def reclaim(
        self, need_bytes: int, *, max_actions: int = 8, deadline_s: float = 2.0
    ) -> list[Outcome]:
        """Clear the best candidates one at a time until ``need_bytes`` are freed.

        Scans first if nothing was scanned yet. Returns each action's measured
        outcome (also kept in :attr:`history`). Never raises.
        """
        try:
            if self.discovery.scans == 0 and not self.candidates():
                self.scan(full=True)
            done: list[Outcome] = []
            freed = 0
            t_end = time.monotonic() + deadline_s
            with self._lock:
                for cand in self.eligible():
                    if freed >= need_bytes or len(done) >= max_actions or time.monotonic() > t_end:
                        break
                    out = self._run(cand)
                    done.append(out)
                    freed += max(0, out.bytes_freed)
            if done:
                with self._scan_lock:
                    self._rebuild_locked()  # sizes changed
            return done
        except Exception:  # the guard must never raise into the app
            return []

    def run(self, name: str) -> Outcome:
        """Run one candidate by name (the controller's choice, a ``reclaim`` command).

        A candidate marked keep is never run: the outcome says so (``ok=False``).
        """
        cand = next((c for c in self.candidates() if c.name == name), None)
        if cand is None:
            self.scan(full=False)
            cand = next((c for c in self.candidates() if c.name == name), None)
        if cand is None:
            return Outcome(name, -1, 0, None, 0.0, False, "no such reclaim action")
        if cand.keep:
            return Outcome(name, cand.expected_bytes, 0, None, 0.0, False, "marked keep")
        with self._lock:
            return self._run(cand)

    def _run(self, cand: Candidate) -> Outcome:
        before, heap_before = current_rss_bytes(), malloc_in_use()
        if cand.kind == "plugin":
            got = call_guarded(cand.name, cand.run, self.timeout_s)
            value, error, ms = got.value, got.error, got.ms
        else:  # our own clears: cache_clear() and the interpreter's purges
            t0 = time.perf_counter()
            value, error = None, ""
            try:
                cand.run()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            ms = (time.perf_counter() - t0) * 1000
        # Freed to the OS (RSS) or to the C allocator (malloc in use), whichever is more:
        # mid-size objects go back to glibc, which keeps them until malloc_trim.
        freed = before - current_rss_bytes()
        if heap_before >= 0:
            freed = max(freed, heap_before - malloc_in_use())
        reported = value if isinstance(value, int) and not isinstance(value, bool) else None
        out = Outcome(cand.name, cand.expected_bytes, freed, reported, ms, not error, error)
        futile = max(freed, reported or 0) <= 0
        self._futile[cand.name] = self._futile.get(cand.name, 0) + 1 if futile else 0
        self.total_freed += max(0, freed)
        self.history = [*self.history[-19:], out]
        return out

    # -- what a user sees --------------------------------------------------------
    def report(self, top: int = 8) -> dict[str, Any]:
        """A compact summary for status and acks: caches found, the last reclaims, the heap."""
        with self._lock:
            cands = list(self._candidates)
        lru = [c for c in cands if c.kind == "lru"]
        lru.sort(key=lambda c: -c.expected_bytes)
        return {
            "discover": self.discover,
            "scans": self.discovery.scans,
            "scan_ms": round(self.discovery.scan_ms, 2),
            "caches_found": len(lru),
            "reclaimable_bytes": sum(max(0, c.expected_bytes) for c in cands if not c.keep),
            "caches": [cache_row(c) for c in lru[:top]],
            "others": [cache_row(c) for c in cands if c.kind != "lru"][:top],
            "last": [o.as_result() for o in self.history[-top:]],
            "total_freed": self.total_freed,
            "errors": self.entry_point_errors[:4],
        }

    def explain(self) -> str:
        """What would be reclaimable, as text (``hivemind run --explain``)."""
        self.scan(full=True)
        return explain_text(self.candidates(), self)


def cache_row(c: Candidate) -> dict[str, Any]:
    """One candidate as a small dict for the wire and the CLI."""
    return {
        "name": c.name,
        "kind": c.kind,
        "entries": c.entries,
        "bytes": c.expected_bytes,
        "hit_rate": c.hit_rate,
        "cost": c.cost,
        "keep": c.keep,
    }


def _clear_lru(ref: Any) -> Any:
    def clear() -> None:
        wrapper = ref()
        if wrapper is not None:
            wrapper.cache_clear()

    return clear


def explain_text(cands: list[Candidate], rec: Reclaimer) -> str:
    """The ``--explain`` report: caches, sizes, hit rates, the heap and advice."""
    from hivemind.swarm.target.heap import arena_advice

    mb = 2**20
    scan = f"scan {rec.discovery.scan_ms:.1f} ms"
    lines = [f"hivemind explain: {len(cands)} reclaim candidates ({scan})"]
    lines.append(f"  {'name':60} {'kind':7} {'entries':>8} {'est MB':>8} {'hit':>5} {'cost':>5}")
    empty = [c for c in cands if c.entries == 0 and c.expected_bytes <= 0 and not c.keep]
    for c in cands:
        if c in empty:
            continue
        est = f"{c.expected_bytes / mb:.2f}" if c.expected_bytes >= 0 else "?"
        hit = f"{c.hit_rate:.2f}" if c.hit_rate >= 0 else "-"
        keep = "  (keep)" if c.keep else ""
        lines.append(
            f"  {c.name[:60]:60} {c.kind:7} {c.entries:>8} {est:>8} {hit:>5} {c.cost:>5.2f}{keep}"
        )
    if empty:
        lines.append(f"  (+ {len(empty)} empty: " + ", ".join(c.name for c in empty[:6]) + " ...)")
    total = sum(max(0, c.expected_bytes) for c in cands if not c.keep)
    lines.append(f"reclaimable (estimated): {total / mb:.1f} MB")
    hs = heap_stats()
    lines.append(f"RSS {hs.rss_bytes / mb:.1f} MB")
    if hs.traced_live >= 0:
        lines.append(
            f"  tracemalloc live {hs.traced_live / mb:.1f} MB; RSS - live "
            f"{(hs.rss_bytes - hs.traced_live) / mb:.1f} MB (interpreter, C heap, fragmentation,"
            " and tracemalloc's own tables)"
        )
    if hs.malloc_free >= 0:
        lines.append(
            f"  malloc: in use {hs.malloc_in_use / mb:.1f} MB, free but kept "
            f"{hs.malloc_free / mb:.1f} MB (fragmentation; malloc_trim may return part)"
        )
    else:
        lines.append(f"  C heap: {hs.reason}")
    reason = trim_reason()
    if reason:
        lines.append(f"  malloc_trim skipped: {reason}")
    advice = arena_advice(hs)
    if advice:
        lines.append(f"advice: {advice}")
    for err in rec.entry_point_errors:
        lines.append(f"entry point error: {err}")
    return "\n".join(lines)


def trim_outcome() -> Outcome:
    """``malloc_trim(0)`` measured as RSS before minus after (skipped with a reason elsewhere)."""
    from hivemind.swarm.target.heap import trim_heap

    reason = trim_reason()
    if reason:
        return Outcome("malloc_trim", -1, 0, None, 0.0, False, f"skipped: {reason}")
    before = current_rss_bytes()
    t0 = time.perf_counter()
    trim_heap()
    ms = (time.perf_counter() - t0) * 1000
    return Outcome("malloc_trim", -1, before - current_rss_bytes(), None, ms, True)
