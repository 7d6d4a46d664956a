"""The reclaim hook the runtime calls: discovery on pressure, reclaims over the target.

One object, :class:`ReclaimHook`, is all ``runtime.py`` knows of reclaiming: it
calls :meth:`ReclaimHook.on_sample` with each RSS reading (an O(1) check; when
pressure just rose or modules loaded, a scan runs in a thread of its own),
hands :meth:`ReclaimHook.options` (name, expected bytes, expected ms) to the
in-target controller whenever :attr:`ReclaimHook.version` changed, runs what
the controller chose with :meth:`ReclaimHook.run`, and publishes the outcomes
as an ack of its own (:meth:`ReclaimHook.local_ack`). With the controller off,
``on_sample`` reclaims over the target by itself.
"""

from __future__ import annotations

import json
import threading
import time

from hivemind.swarm.target.planner import Outcome, Reclaimer, trim_outcome
from hivemind.swarm.target.reclaim import ReclaimRegistry

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ReclaimHook"]

PRESSURE_AT = 0.7  # of the target: discovery runs when RSS first crosses this
RECLAIM_AT = 1.0  # of the target: reclaims run above this ...
RECLAIM_TO = 0.9  # ... until RSS is back under this share of it
COOLDOWN_S = 1.0


class _Scanner:
    """Runs the reclaimer's scans in a thread of their own.

    A scan walks every module and, the first time, reads every installed
    package's entry points: file reads that each give the GIL up, which a
    thread beside a busy app gets back only a switch interval later. Done in
    the runtime thread, the first scan (when pressure first rises, exactly
    when the guard is needed) held the controller off for seconds. Here it
    costs the app the same CPU and delays nothing; :meth:`warm_up` loads the
    entry points at start, before there is any pressure.
    """

    def __init__(self, reclaimer: Reclaimer) -> None:
        self.reclaimer = reclaimer
        self.finished = 0  # scans done; the hook compares it with what it has seen
        self.idle = threading.Event()
        self.idle.set()
        self._wake = threading.Event()
        self._asked = threading.Lock()  # a request is never lost between loop turns
        self._scan: bool | None = None  # None: no scan asked for; else full or not
        self._warm = False
        self._thread: threading.Thread | None = None

    def request(self, full: bool) -> None:
        """Ask for a scan (every module if ``full``, else the new ones) in the thread."""
        with self._asked:
            self._scan = full or bool(self._scan)
        self._kick()

    def warm_up(self) -> None:
        """Load the installed entry points in the thread now, before any pressure."""
        with self._asked:
            self._warm = True
        self._kick()

    def _kick(self) -> None:
        self.idle.clear()
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="hivemind-scan", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._asked:
                warm, self._warm = self._warm, False
                full, self._scan = self._scan, None
            try:
                if warm:
                    self.reclaimer.prepare()
                if full is not None:
                    self.reclaimer.scan(full=full)
                    self.finished += 1
            except Exception:  # never into the app; the next request tries again
                self.reclaimer.discovery.errors += 1
            if not self._wake.is_set():
                self.idle.set()


class ReclaimHook:
    """Discovery and local reclaims for one guarded process; never raises."""

    def __init__(self, registry: ReclaimRegistry, target_bytes: int, name: str) -> None:
        self.reclaimer = Reclaimer(registry)
        self.target_bytes = target_bytes
        self.name = name
        self.errors = 0
        self._last = 0.0
        self._seq = 0
        self.version = 0  # bumped whenever the candidates change (a scan, a reclaim)
        self._scanner = _Scanner(self.reclaimer)
        self._seen = 0

    def on_sample(
        self, rss: int, now: float | None = None, *, decide: bool = True
    ) -> list[Outcome]:
        """Look for caches when pressure rises (in the background: see :class:`_Scanner`;
        :attr:`version` moves when a scan has finished). With ``decide`` (no controller running),
        also reclaim above the target (cooldown 1 s); otherwise the controller decides
        when, from :meth:`options`, and runs what it chose with :meth:`run`."""
        now = time.monotonic() if now is None else now
        try:
            full = self.reclaimer.due(rss >= PRESSURE_AT * self.target_bytes, now)
            if full is not None:
                self._scanner.request(full)
            if self._scanner.finished != self._seen:
                self._seen = self._scanner.finished
                self.version += 1
            if not decide:
                return []
            if rss <= RECLAIM_AT * self.target_bytes or now - self._last < COOLDOWN_S:
                return []
            self._last = now
            need = rss - int(RECLAIM_TO * self.target_bytes)
            done = self.reclaimer.reclaim(need)
            if done:
                self.version += 1
                done.append(trim_outcome())
            return done
        except Exception:  # never into the app
            self.errors += 1
            return []

    def warm_up(self) -> None:
        """Load the installed entry points in the background now (the runtime's start)."""
        self._scanner.warm_up()

    def wait_scanned(self, timeout_s: float = 5.0) -> bool:
        """Block until no scan is pending (tests, ``--explain``); False on timeout."""
        return self._scanner.idle.wait(timeout_s)

    def actions(self) -> list[tuple[str, int, float]]:
        """What a controller may choose from: (name, expected bytes, expected cost), best first.

        The cost is the planner's unitless rebuild cost (0 free ... 10 every request
        needs it); :meth:`options` gives it in milliseconds instead.
        """
        return [(c.name, c.expected_bytes, c.cost) for c in self.reclaimer.eligible()]

    def options(self) -> list[tuple[str, int, float]]:
        """(name, expected bytes, expected cost in ms) for a controller that compares in ms.

        Expected ms = what the action took last time (1 ms if never run) x (1 + cost):
        the clear itself is quick, the rebuild afterwards is what the cost scales. The
        controller then keeps its own running mean of what each run really took.
        """
        took = {o.name: max(0.01, o.duration_ms) for o in self.reclaimer.history}
        freed = {o.name: o.bytes_freed for o in self.reclaimer.history}
        out = []
        for c in self.reclaimer.eligible():
            # an action that does not say what it frees: offered at 1 byte (chosen last),
            # then at what it was measured to free
            expected = c.expected_bytes if c.expected_bytes >= 0 else max(1, freed.get(c.name, 1))
            ms = round(took.get(c.name, 1.0) * (1.0 + c.cost), 3)
            out.append((c.name, expected, ms))
        return out

    def run(self, name: str) -> Outcome:
        """Run one candidate by name (a discovered cache, an interpreter cache, a plug-in)."""
        out = self.reclaimer.run(name)
        self.version += 1
        return out

    def sample_fields(self) -> dict[str, int]:
        """Two numbers every sample carries (read from the last scan; no work here)."""
        found, reclaimable = self.reclaimer.summary
        return {"caches_found": found, "reclaimable_bytes": reclaimable}

    def status_json(self) -> str:
        """The ``reclaim`` field of the target's status hash (``swarm status`` reads it)."""
        return json.dumps(self.reclaimer.report(), separators=(",", ":"))

    def local_ack(self, outcomes: list[Outcome], sample_ts: float) -> str:
        """An ack (plain JSON, no pydantic) reporting reclaims the target chose itself."""
        self._seq += 1
        report = self.reclaimer.report()
        now = time.time()
        ack: dict[str, Any] = {
            "v": 1,
            "ts": now,
            "kind": "ack",
            "command_id": f"local-{self._seq}",
            "decision_id": "",
            "target": self.name,
            "ok": all(o.ok for o in outcomes if o.name != "malloc_trim"),
            "bytes_freed": sum(o.bytes_freed for o in outcomes),
            "duration_ms": round(sum(max(0.0, o.duration_ms) for o in outcomes), 3),
            "applied_ts": now,
            "received_ts": sample_ts,
            "sample_ts": sample_ts,
            "results": [o.as_result() for o in outcomes][:32],
            "caches": report["caches"][:16],
        }
        return json.dumps(ack, separators=(",", ":"))
