"""The in-target GC controller: pure, table-tested, steered by headroom and measured cost.

It runs in the guarded process's own runtime thread (no round trip) and
owns three control variables, cheapest first:

- **When to run a full collection (+ ``malloc_trim``)**: from ``collect``
  (80 %) of the target, the watchdog's rule, with three differences that are
  the whole point. Trims that give nothing back (a heap of small objects,
  which pymalloc keeps in its own arenas) are left out of the next
  ``trim_skip`` collections under ``tighten``: each costs ~5 ms. A collection
  is *useful* if it freed memory (RSS, or unreachable objects found, which the
  app reuses even when RSS stays flat); after a useful one the next waits
  until RSS has grown again (``regrow_fraction`` of the target), since
  collecting a heap whose garbage is already gone costs the app and frees
  nothing, and, under ``tighten``, until that growth has stopped for
  ``settle_s`` (at most ``settle_max_s``): a working set still being built is
  live, and a collection in the middle of it walks it for nothing before the
  one that frees it. Fresh pressure (RSS came up from under the band) is
  answered at once. And while RSS stays in the band, every collection is paced
  by its own measured cost: after one that took ``d`` seconds the next waits
  at least ``d / budget`` (50 % of wall time after a useful one, 20 % after a
  futile one, 30 % over the target), and each futile one in a row halves the
  budget (once only for a cheap one). RSS that left the band and came back is
  fresh pressure: the next collection runs at once. After a futile one that
  found no garbage there is *nothing new* (:attr:`Controller.nothing_new`)
  while RSS still rises, too few objects were made since
  (``Observation.fresh``) to be worth collecting and RSS has not grown by a
  futile collection's worth (four times that for each in a row): no collection runs
  then, since a heap of bytes growing is live data.
  The app's own thresholds stay untouched while this alone holds the target.
- **What its collections walk**: after one that found cyclic garbage, what
  survived it is frozen (:meth:`Controller.keep_frozen`; the runtime's
  :mod:`~hivemind.swarm.target.freezer` does it), so the next ones walk only
  what was made since, not the long-lived heap again; every
  ``thaw_every``-th (3rd) walks everything (``Plan.thaw``), and so do a probe,
  one at ``tighten`` or over, the one after a partial collection that was not
  useful (the garbage may be among the frozen: a partial one is never a
  verdict of futility) and the one after a partial collection that left RSS
  more than ``partial_slack`` of the way from what the last full walk left
  to the collect band (garbage kept a while, then dropped, is among the
  frozen: left there, it cost the TUI corpus app peaks up to 63 MB against
  60). Nothing stays frozen after a futile collection, while infeasible, or
  ``thaw_idle_s`` after the last collection of ours.
- **The gen-0 threshold** (with gen-1/2 the app's capped at 10, or the
  seed's 10 for a disabled collector): the collector's own incremental way
  to free young cyclic garbage, taken over as soon as a collection finds
  cyclic garbage (the app makes it: young collections free it while it is
  young and in cache, for less than full collections of the whole heap),
  if the app's own gen-0 is at least ``engage_ratio`` times ours (an app on
  CPython's default 700 already collects young garbage: taking over at 500
  would only cost a trial).
  Collections that find nothing mean live data grows, and tighter
  thresholds would only cost the app. It starts from the session's learned
  setting, else the report's ``balanced`` profile (a preset the coordinator
  may change); for an app that disabled its collector, from
  ``start_t0_disabled`` (5,000: a job that chose no automatic collections
  paid more for young ones every 500 allocations than for the watchdog's
  full collections). When collections still cannot keep up within their budget
  (RSS at ``tighten``, 95 %, rising, the next one not yet due) it is
  *halved* (fast) at most every ``tighten_every_s``, down to
  ``floor_t0``; when headroom returns (RSS under ``relax`` for
  ``relax_dwell_s``, shorter in proportion far under it, down to
  ``min_dwell_share`` of it) it grows by ``relax_factor`` a step at a time (by up
  to ``relax_factor ** relax_deep`` far under it), never
  straight back above a setting that recently failed, and once it reaches
  the app's own threshold (or ``release_t0``) the app's settings come back
  untouched (AIMD-like: the settled state is the cheapest one that holds);
  a collector the app disabled comes back only once young collections find
  under ``release_found_bytes`` of garbage in a dwell (until then gen-0
  stays at ``release_t0``: handing it back while the app still makes cycles
  would let them pile up to the next full collection). The app's
  collector time is measured: above ``gc_cost_ceiling_ms`` per second with
  headroom left, it relaxes too, after the shortest dwell and by the
  biggest step. **The hand-over is judged by what it
  costs**: every collection's time and the unreachable objects it found are
  counted (``Observation.gc_s``/``gc_found``) while ours and while the
  app's own thresholds (and the guard's full collections) are in force.
  Since the app makes the same garbage either way, the regime that finds
  more of it per millisecond of collector time costs the app less. As soon as both regimes
  have ``trial_min_gc_s`` of collector time (and at least ``trial_s``,
  0.1 s, engaged: the trial costs most where young collections lose), young
  collections yielding under ``young_worse`` of what full collections did
  (garbage kept a while, e.g. a screen kept for "undo", is walked by young
  collections again and again before it dies) give the app its settings
  back, and garbage does not engage again for ``verdict_s``.
- **Infeasible**: over the target and ``infeasible_after`` collections in a row
not useful (freeing under a quarter of the excess; with nothing new since,
no third one is run to find out) means live data alone exceeds the target.
The controller then says so (``live_over_bytes``), gives the app its own
settings back and probes at most every ``d / 1 %`` (>= ``probe_min_s``,
doubling up to ``probe_max_s``). It resumes when RSS falls
under ``feasible_again`` of the target or a probe frees memory again.
An app that set its own thresholds or disabled its collector is still
guarded (engaged means our thresholds with the collector enabled) and gets
exactly its own settings back when pressure ends; if it changes them while
engaged, those become the settings it gets back.

**Extra reclaim actions** (the hook for app caches and discovered ones):
:meth:`Controller.set_reclaim_options` takes :class:`ReclaimOption`
``(name, expected_bytes, expected_cost_ms)``. When a full collection is due,
options expected to cost less than the last full collection are planned
first (``Plan.reclaim``, most bytes per millisecond first) until they cover
what is needed; the runtime runs them by name and reports what each freed
through :meth:`Controller.reclaimed`, which keeps the expectations current.

No I/O, no clock reads: time is in each :class:`Observation`. The records it
reads and returns (:class:`ControllerConfig`, :class:`Observation`, :class:`Plan`,
:class:`GCSettings`, :class:`ReclaimOption`) live in
:mod:`~hivemind.swarm.target.control_types` and are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence

from hivemind.swarm.record import field, record, replace
from hivemind.swarm.target.control_types import (
    CTL_T0_SETTING,
    PRESET_T0,
    ControllerConfig,
    GCSettings,
    Observation,
    Plan,
    ReclaimOption,
)

__all__ = [
    "CTL_T0_SETTING",
    "PRESET_T0",
    "Controller",
    "ControllerConfig",
    "GCSettings",
    "Observation",
    "Plan",
    "ReclaimOption",
]


DISABLED_T0 = 1 << 30  # a disabled collector's gen-0 threshold, in effect


@record
class _State:
    app: GCSettings | None = None  # the app's own settings, restored on release
    applied: GCSettings | None = None  # ours, while engaged
    t0: int = 0
    last_tighten: float = -1e9
    last_change: float = -1e9
    calm_since: float | None = None
    fail_t0: int = 0
    fail_at: float = -1e9
    held_t0: int = 0
    held_since: float = 0.0
    last_rss: int = 0
    retry_at: float | None = None  # a collection may run from here on, whatever the pacing
    pending_until: float = -1e9  # a planned collection not yet reported
    last_collect_at: float = -1e9
    last_collect_rss: int = 0
    last_collect_s: float = 0.0
    futile: int = 0
    regrow_at: int = 0  # after a useful collection: collect again once RSS reaches this
    rose_at: float = -1e9  # RSS last grew (by more than settle_bytes)
    regrown_at: float | None = None  # RSS reached regrow_at (the wait to settle began)
    garbage: bool = False  # the last collection found cyclic garbage (not only an RSS drop)
    nothing_new: bool = False  # the last step: nothing new to find since a futile collection
    rearmed: bool = False  # RSS went under the collect band since the last collection
    probes: int = 0
    infeasible: bool = False
    live_over: int = 0
    collections: int = 0
    freed: int = 0
    options: dict[str, ReclaimOption] = field(default_factory=dict)
    gc_seen: tuple[float, int] = (0.0, 0)  # the last observation's gc_s, gc_found
    off: tuple[float, int] = (0.0, 0)  # collector s / objects found under the app's settings
    on: tuple[float, int] = (0.0, 0)  # ... and under ours, since engaging
    on_mark: int = 0  # objects found under ours at the last relax step
    engaged_at: float = 0.0
    young_off_until: float = -1e9  # young collections lost their trial: no engaging on garbage
    trim_skip: int = 0  # collections left to run without malloc_trim (trims gave nothing)
    trim_gives: int = -1  # bytes a malloc_trim gives back, on average (-1: none yet)
    partials: int = 0  # collections in a row that skipped frozen objects
    walk_all: bool = False  # the next collection walks the frozen objects too
    floor: int = 0  # RSS the last collection that walked everything left


class Controller:
    """Feed :meth:`step` one :class:`Observation` per sample; do what the :class:`Plan` says."""

    def __init__(self, config: ControllerConfig | None = None, *, learned_t0: int = 0) -> None:
        self.config = config or ControllerConfig()
        self._s = _State()
        self.learned_t0 = max(0, int(learned_t0))

    # --- read-outs ---------------------------------------------------------------
    @property
    def engaged(self) -> bool:
        return self._s.applied is not None

    @property
    def infeasible(self) -> bool:
        return self._s.infeasible

    @property
    def nothing_new(self) -> bool:
        """The last step found nothing new to collect since a futile collection (RSS
        still rising, too few objects made to be garbage): until that changes, no
        collection is wanted and crossing the band needs no reaction between samples."""
        return self._s.nothing_new

    @property
    def live_over_bytes(self) -> int:
        """How far live data exceeds the target (RSS after the last futile collection)."""
        return self._s.live_over if self._s.infeasible else 0

    @property
    def t0(self) -> int:
        return self._s.t0 if self.engaged else 0

    @property
    def held_t0(self) -> int:
        """The least aggressive gen-0 threshold that held the target for ``hold_s`` (0: none)."""
        return self._s.held_t0

    @property
    def app_settings(self) -> GCSettings | None:
        return self._s.app

    @property
    def collections(self) -> int:
        return self._s.collections

    @property
    def freed_bytes(self) -> int:
        return self._s.freed

    def state(self) -> str:
        """One word for status: ``idle``, ``engaged``, ``infeasible``."""
        if self._s.infeasible:
            return "infeasible"
        return "engaged" if self.engaged else "idle"

    # --- inputs ------------------------------------------------------------------
    def preset(self, profile: str) -> None:
        """Start (and, if engaged, continue) from one of the report's profiles."""
        t0 = PRESET_T0.get(profile)
        if t0 is not None:
            self.config = replace(self.config, start_t0=t0)
            self.learned_t0 = 0

    def set_reclaim_options(self, options: Sequence[ReclaimOption]) -> None:
        """Replace the extra reclaim actions (see the module doc); keeps measured ones.

        While infeasible, a new action expected to free at least a quarter of
        the excess is tried at the next step: a cache found after the collector
        alone was judged futile (discovery runs in the background) may well
        make the target feasible; a small one could not, and waits for a probe.
        """
        s = self._s
        known = s.options
        # Worth a probe only if it alone could make one useful: a quarter of the excess.
        worth = max(1, int(self.config.excess_fraction * s.live_over))
        fresh = any(o.name not in known and o.expected_bytes >= worth for o in options)
        s.options = {o.name: known.get(o.name, o) for o in options}
        if fresh and s.infeasible:
            s.retry_at = float("-inf")  # something new to try: probe with it at once

    def reclaimed(self, name: str, bytes_freed: int, cost_ms: float) -> None:
        """What an extra reclaim action just freed and cost: updates its expectation."""
        old = self._s.options.get(name)
        if old is None:
            return
        self._s.options[name] = ReclaimOption(
            name,
            int(0.5 * old.expected_bytes + 0.5 * max(0, bytes_freed)),
            0.5 * old.expected_cost_ms + 0.5 * max(0.0, cost_ms),
        )

    def collected(self, now: float, bytes_freed: int, duration_s: float, rss_after: int,
                  target: int, objects: int = 0, partial: bool = False) -> None:  # fmt: skip
        """Report a full collection the plan asked for: paces the next, detects futility.

        What a collection freed is the larger of the RSS drop and the
        unreachable objects it found (``objects``, what ``gc.collect()``
        returned) at an assumed ``object_bytes`` each: freed objects mostly
        stay in the allocator's pools, so RSS does not drop, but the app
        reuses them instead of growing. It is *useful* if that is at least
        ``futile_min_bytes`` (or ``futile_fraction`` of the target or of RSS,
        whichever is larger) and, over the target, at least ``excess_fraction``
        of the excess. After a useful one the next waits until RSS has grown
        again (``regrow_fraction``): collecting a heap whose garbage is already
        gone costs the app and frees nothing. Futile ones are paced by a budget
        that halves each time (once only for a cheap one, under
        ``presume_cost_s``: a working set that was live mid-burst may be
        garbage a moment later); ``infeasible_after`` of them in a row over
        the target flag it.

        ``partial``: the collection skipped objects an earlier one froze (see
        :meth:`keep_frozen`). One that was not useful is no verdict (garbage may
        be among the frozen): the next collection walks everything, paced as
        after a useful one, and judges.
        """
        c, s = self.config, self._s
        s.partials = s.partials + 1 if partial else 0
        s.collections += 1
        s.freed += max(0, bytes_freed)
        s.last_collect_s = max(0.0, duration_s)
        s.last_collect_at = now
        s.last_collect_rss = max(1, rss_after + max(0, bytes_freed))
        s.retry_at, s.pending_until = None, -1e9
        s.rearmed = False
        s.regrown_at = None  # the next regrowth waits to settle afresh
        before = rss_after + max(0, bytes_freed)
        enough = self._enough(target, before)
        freed = max(bytes_freed, objects * c.object_bytes)
        s.garbage = objects * c.object_bytes >= enough
        excess = before - target  # how far over it was before
        useful = freed >= enough and (excess <= 0 or freed >= c.excess_fraction * excess)
        if partial and not useful:
            s.walk_all, s.regrow_at = True, 0
            return
        # A partial one that left RSS well above what the last full walk left (garbage
        # kept a while, then dropped, is among the frozen): the next walks everything.
        band = c.collect * target
        s.walk_all = partial and rss_after > s.floor + c.partial_slack * max(0.0, band - s.floor)
        if not partial:
            s.floor = rss_after
        s.futile = 0 if useful else s.futile + 1
        if useful:
            s.infeasible = False
            s.probes = 0
            s.regrow_at = rss_after + int(max(c.regrow_min_bytes, c.regrow_fraction * target))
        else:
            s.regrow_at = 0
            if s.infeasible:
                s.probes += 1
                s.live_over = max(0, rss_after - target)
            elif s.futile >= c.infeasible_after and self._over(rss_after, target):
                self._flag(rss_after - target)

    def keep_frozen(self, now: float) -> bool:
        """Whether what survived the guard's collections should stay frozen now.

        Yes while they find garbage (the app makes cyclic garbage beside a
        long-lived heap: the next collections need walk only what is new),
        with freezing on (``thaw_every`` > 1), feasible, and a collection of
        ours within ``thaw_idle_s`` (else pressure has ended: the app gets its
        heap back as it was).
        """
        c, s = self.config, self._s
        return (
            c.thaw_every > 1 and s.garbage and s.futile == 0 and not s.infeasible
            and now - s.last_collect_at < c.thaw_idle_s
        )  # fmt: skip

    def trimmed(self, bytes_freed: int) -> None:
        """Report what the ``malloc_trim`` a plan asked for gave back (the RSS drop).

        A trim costs milliseconds whether or not it finds anything: on a heap of
        small objects (pymalloc keeps its own arenas) it gives back nothing.
        When trims give back under ``trim_min_bytes`` (page noise) on average
        (the last one counts half: single trims vary from nothing to a few
        hundred KB on one app), the next ``trim_skip`` collections do without,
        except at the target's edge; the one after that finds out again.
        """
        c, s = self.config, self._s
        got = max(0, bytes_freed)
        s.trim_gives = got if s.trim_gives < 0 else (s.trim_gives + got) // 2
        s.trim_skip = 0 if s.trim_gives >= c.trim_min_bytes else c.trim_skip

    def _enough(self, target: int, rss: int) -> float:
        """What a collection must free not to be futile (before the excess rule)."""
        c = self.config
        return max(c.futile_min_bytes, c.futile_fraction * max(target, rss))

    def _nothing_new(self, obs: Observation) -> bool:
        """After a futile collection that found no garbage, RSS still rising: too few
        objects made since (``Observation.fresh``) to hold ``_enough`` of cyclic
        garbage, and no reclaim option expects to free anything. The next
        collection would walk the same live heap for nothing.

        Not once RSS stopped rising for ``settle_max_s``: a working set that was
        live at the last collection (moved to the oldest generation, where
        ``fresh`` does not count it) may have been dropped since. Nor once RSS
        grew ``_enough`` since that collection, four times that for each futile one
        in a row: a few objects can hold megabytes (a caught exception's frames
        holding a buffer are one cycle of a handful of objects), and only a
        collection can tell such garbage from live data; but two futile ones in a
        row while RSS grew are live data more likely than not (the live-growth
        corpus app ran a third collection, ~10 ms, at twice the growth, just
        before its RSS crossed the target and flagged it). Nor for fresh pressure:
        RSS that came back from under the band is answered at once, as always.
        """
        c, s = self.config, self._s
        if s.infeasible or s.futile == 0 or s.garbage or s.rearmed or obs.fresh < 0:
            return False
        if obs.now - s.rose_at >= c.settle_max_s:
            return False
        if any(o.expected_bytes > 0 for o in s.options.values()):
            return False
        enough = self._enough(obs.target, obs.rss)
        if obs.rss - s.last_collect_rss >= enough * 4.0 ** min(s.futile - 1, 3):
            return False
        return obs.fresh * c.object_bytes < enough

    def _over(self, rss: int, target: int) -> bool:
        return rss > target * (1.0 + self.config.infeasible_margin)

    def _flag(self, live_over: int) -> None:
        s = self._s
        s.infeasible = True
        s.probes = 0
        s.live_over = max(0, live_over)

    def _predicted_s(self, rss: int) -> float:
        """What a full collection now should take: the last one's time, scaled by how
        much the heap grew since (a heap twice as big takes about twice as long)."""
        s = self._s
        return s.last_collect_s * max(1.0, rss / max(1, s.last_collect_rss))

    def due_at(self, rss: int, target: int) -> float:
        """The monotonic time from which the next full collection may run, by its cost
        pacing (in the past: now). Whether one is wanted at all is :meth:`step`'s call.

        A futile or probing collection is expected to cost what the last one
        did, scaled by how much the heap has grown since (a heap twice as big
        takes about twice as long to walk), and is paced by its budget.
        """
        c, s = self.config, self._s
        if s.retry_at is not None:
            return max(s.retry_at, s.pending_until)
        if s.collections == 0 or (s.rearmed and not s.infeasible):
            return s.pending_until  # fresh pressure (RSS came back up): no pacing
        d = self._predicted_s(rss)
        if s.infeasible:
            gap = max(d / c.infeasible_budget, c.probe_min_s * 2.0**s.probes)
            gap = min(gap, max(c.probe_max_s, d / c.infeasible_budget))
        elif s.futile == 0:
            gap = max(c.min_collect_gap_s, s.last_collect_s / c.useful_budget)
        else:
            budget = c.over_budget if rss > target else c.collect_budget
            halvings = min(s.futile, 6 if d >= c.presume_cost_s else 1)
            budget = max(c.infeasible_budget, budget / 2.0**halvings)
            gap = max(c.min_collect_gap_s, d / budget)
        return max(s.last_collect_at + gap, s.pending_until)

    def skipped(self, now: float) -> None:
        """The collection the plan asked for did not run (one was already under way in
        another thread): try again after the shortest gap, judging nothing."""
        self._s.retry_at = now + self.config.min_collect_gap_s
        self._s.pending_until = -1e9

    # --- the step ----------------------------------------------------------------
    def _ours(self, t0: int) -> GCSettings:
        """Gen-0 is ours; gen-1/2 are the app's, capped at ``max_t1``/``max_t2`` (the
        seed's 10, CPython's default): garbage that survived a few young collections
        (a screen kept for "undo", then dropped) is freed only by the older ones."""
        c = self.config
        app = self._s.app or GCSettings((700, 10, 10))
        if not app.enabled or app.thresholds[0] == 0:
            return GCSettings((t0, c.max_t1, c.max_t2), True)
        t1, t2 = app.thresholds[1], app.thresholds[2]
        return GCSettings((t0, min(max(1, t1), c.max_t1), min(max(1, t2), c.max_t2)), True)

    def _app_t0(self) -> int:
        app = self._s.app
        t0 = app.thresholds[0] if app is not None and app.enabled else 0
        # A disabled collector (or threshold 0) behaves as an infinite threshold.
        return t0 if t0 > 0 else DISABLED_T0

    def _start_t0(self) -> int:
        """Where engaging starts: the session's learned setting, else the preset (for a
        collector the app disabled, ``start_t0_disabled``)."""
        if self._app_t0() >= DISABLED_T0:  # a job that chose no automatic collections
            return self.learned_t0 or self.config.start_t0_disabled
        return self.learned_t0 or self.config.start_t0

    def _tighten(self, now: float, frac: float) -> Plan | None:
        """Engage (from the learned setting or the preset) or halve gen-0; None at the floor."""
        c, s = self.config, self._s
        if s.applied is None:
            start = self._start_t0()
            app_t0 = self._app_t0()
            t0 = max(c.floor_t0, start if start < app_t0 else app_t0 // 2)
            reason = f"engage at {t0} ({frac:.0%} of target)"
            s.engaged_at, s.on, s.on_mark = now, (0.0, 0), 0
        elif s.t0 > c.floor_t0:
            s.fail_t0, s.fail_at = s.t0, now
            t0 = max(c.floor_t0, s.t0 // 2)
            reason = f"tighten to {t0} ({frac:.0%} of target)"
        else:
            return None
        if s.held_t0 > t0:
            s.held_t0 = 0  # what held before no longer does
        s.t0 = t0
        s.applied = self._ours(t0)
        s.last_tighten = s.last_change = s.held_since = now
        return Plan(apply=s.applied, reason=reason)

    def _release(self, reason: str) -> Plan:
        s = self._s
        app = s.app
        s.applied = None
        s.on = (0.0, 0)
        s.garbage = False  # engage again only when a new collection finds garbage
        s.t0 = 0
        s.calm_since = None
        return Plan(apply=app, reason=reason)

    def step(self, obs: Observation) -> Plan:
        """Decide for one observation; the caller applies the plan, then reports collections."""
        c, s = self.config, self._s
        frac = obs.rss / max(1, obs.target)
        rising = obs.rss > s.last_rss
        if obs.rss > s.last_rss + c.settle_bytes:
            s.rose_at = obs.now
        s.last_rss = obs.rss
        plan = Plan()
        if s.applied is None:
            s.app = obs.current  # whatever the app runs now is what it gets back
        elif obs.current != s.applied:
            s.app = obs.current  # the app changed its settings while we held ours
            plan = Plan(apply=s.applied, reason="app changed its GC settings; kept as its own")
        self._count_yield(obs)
        nothing_new = s.nothing_new = self._nothing_new(obs)
        if s.infeasible and frac < c.feasible_again:
            s.infeasible, s.futile, s.probes, s.live_over = False, 0, 0, 0
            s.retry_at, s.regrow_at = obs.now, 0
        elif (
            not s.infeasible and s.futile >= 1 and self._over(obs.rss, obs.target)
            and self._predicted_s(obs.rss) >= c.presume_cost_s
        ):  # fmt: skip
            # The last collection found no garbage, RSS has since gone over the target,
            # and another would walk a big heap (costly) most likely for nothing: said
            # now. A probe (paced at the infeasible budget) checks it; finding garbage
            # resumes control. Cheap collections are run for evidence instead.
            self._flag(obs.rss - obs.target)
        elif nothing_new and s.futile >= c.infeasible_after and self._over(obs.rss, obs.target):
            # Over the target, the last collections found nothing and too little was made
            # since to be garbage: live data grows past it. Said now, no collection.
            self._flag(obs.rss - obs.target)
        # A full collection is wanted in the band, after a useful one only once RSS grew,
        # after a futile one only if there can be something new to find.
        if frac < c.collect:
            s.rearmed = True  # the next crossing is fresh pressure, not more of the same
        want = frac >= c.collect and (s.regrow_at == 0 or obs.rss >= s.regrow_at)
        want = want and not nothing_new
        if want and s.regrow_at and not s.rearmed and frac < c.tighten:
            want = self._settled(obs.now)
        else:
            s.regrown_at = None
        paced = obs.now < self.due_at(obs.rss, obs.target)  # ... its cost budget says not yet
        young_lost = obs.now < s.young_off_until
        # Collections find garbage and RSS is at the target's edge: one runs now, whatever
        # the budget (pacing bounds what collecting costs; the target is the point).
        # Regrowth between them still bounds how often. Gen-0 is tightened as well if the
        # budget alone would have held this one back.
        edge = (
            paced and want and s.futile == 0 and s.collections > 0 and frac >= c.tighten
            and obs.now >= s.pending_until
            and obs.now - s.last_collect_at >= c.min_collect_gap_s
        )  # fmt: skip
        # 1. the thresholds: only when paced collections alone do not hold
        if s.infeasible:
            if s.applied is not None:
                plan = self._release("infeasible: live data over the target; app settings back")
        elif s.applied is not None and (verdict := self._young_loses(obs.now)):
            s.young_off_until = obs.now + c.verdict_s
            s.off = (0.0, 0)  # the next trial measures afresh
            plan = self._release(verdict)
        elif (
            s.applied is None and s.garbage and obs.now >= s.young_off_until
            and self._app_t0() >= c.engage_ratio * self._start_t0()
        ):  # fmt: skip
            # The last collection found cyclic garbage: the app makes it. The collector's
            # own young collections free it while it is young (and in cache), for far less
            # than full collections of the whole heap: engage at once (RSS has just dropped
            # under the band: waiting for it to come back would cost another full one).
            # Not when the app's own young collections already run near our setting (the
            # default 700 against our 500): taking over would change nothing but the cost
            # of a trial; tightening when collections cannot keep up still applies.
            plan = self._tighten(obs.now, frac) or plan
        elif frac >= c.tighten and (rising or frac >= 1.0):
            s.calm_since = None
            s.held_since = obs.now
            # Gen-0 is taken over only when the last collection found cyclic garbage (not
            # just an RSS drop from malloc_trim) and the next cannot run yet within its
            # budget: the collector's own young collections may then free it for less.
            # Collections that find nothing mean live data grows: tighter thresholds
            # would only cost the app.
            if (
                want and paced and s.garbage and not young_lost
                and obs.now - s.last_tighten >= c.tighten_every_s
            ):  # fmt: skip
                plan = self._tighten(obs.now, frac) or plan
        elif s.applied is not None:
            costly = obs.gc_ms_per_s > c.gc_cost_ceiling_ms and frac < c.collect
            if frac < c.relax or costly:
                s.calm_since = obs.now if s.calm_since is None else s.calm_since
            else:
                s.calm_since = None
            if obs.now - s.held_since >= c.hold_s and frac < c.tighten:
                s.held_t0 = s.t0  # the latest (least aggressive) setting that held
            # Deep headroom relaxes faster: the dwell shrinks with RSS's share of the
            # relax band (at 7 % of the target, a tenth of it), so a setting far tighter
            # than the headroom needs is not paid for seconds on end.
            # A costly setting with headroom left waits the shortest dwell: it holds the
            # target already, and each second spent there is paid in collector time.
            share = min(1.0, max(c.min_dwell_share, frac / c.relax))
            dwell = c.relax_dwell_s * (c.min_dwell_share if costly else share)
            dwell_ok = s.calm_since is not None and obs.now - s.calm_since >= dwell
            if dwell_ok and obs.now - s.last_change >= dwell:
                # ... and by a bigger step: relax_factor once at the relax band, raised to
                # the band's share over RSS's (at a third of it, cubed), at most
                # relax_deep times. A job at a tenth of its target on the preset's 500
                # pays the cost of a young collection every 500 allocations for seconds;
                # at 5,000 the batch corpus job did 1.45x the watchdog's work.
                deep = c.relax_deep if costly else min(c.relax_deep, c.relax / max(frac, 1e-3))
                deep = max(1.0, deep)
                new = int(s.t0 * c.relax_factor**deep) + 1
                if s.fail_t0 and obs.now - s.fail_at < c.fail_memory_s:
                    new = min(new, s.fail_t0 - 1)  # do not go straight back to what failed
                found = (s.on[1] - s.on_mark) * c.object_bytes  # young garbage, this dwell
                s.on_mark = s.on[1]
                if new >= min(self._app_t0(), c.release_t0):
                    # Thresholds this relaxed no longer matter, unless the app turned its
                    # collector off: then handing it back means garbage piles up to the
                    # next full collection of the whole heap. Such an app gets it back once
                    # young collections stop finding garbage; until then gen-0 stays here.
                    if self._app_t0() < DISABLED_T0 or found < c.release_found_bytes:
                        return self._release(f"relaxed back to the app's settings at {frac:.0%}")
                    new = max(s.t0, c.release_t0)
                    s.last_change = obs.now  # judged again after another dwell
                if new > s.t0:
                    s.t0 = new
                    s.applied = self._ours(new)
                    s.last_change = s.held_since = obs.now
                    s.calm_since = obs.now
                    plan = Plan(apply=s.applied, reason=f"relax to {new} at {frac:.0%}")
        # 2. a full collection, paced by its own measured cost
        if want and (edge or not paced):
            s.pending_until = obs.now + 1.0  # until collected() or skipped() says more
            need = obs.rss - int(c.relax * obs.target)
            extra = self._choose(need)
            why = "probe" if s.infeasible else f"collect at {frac:.0%}"
            trim = s.trim_skip <= 0 or frac >= c.tighten
            s.trim_skip -= not trim
            # Everything is walked every thaw_every-th time, before any verdict (after a
            # partial one that was not useful, for a probe), after a partial one that left
            # RSS high, and at the target's edge.
            thaw = s.walk_all or s.partials + 1 >= c.thaw_every or s.infeasible or frac >= c.tighten
            plan = replace(
                plan, collect=True, trim=trim, reclaim=extra, thaw=thaw,
                reason=plan.reason + "; " + why,
            )  # fmt: skip
        return plan

    def _settled(self, now: float) -> bool:
        """RSS grew back into the band after a useful collection, under ``tighten``: has
        the growth stopped (no rise for ``settle_s``), or has it gone on ``settle_max_s``?

        A working set still being built is live: a collection now walks it for nothing
        and the one after it (once the app drops it) frees it. Fresh pressure (RSS came
        up from under the band) and RSS at the target's edge are answered at once.
        """
        c, s = self.config, self._s
        if s.regrown_at is None:
            s.regrown_at = now
        return now - s.rose_at >= c.settle_s or now - s.regrown_at >= c.settle_max_s

    def _count_yield(self, obs: Observation) -> None:
        """Add the collector time and garbage found since the last observation to the
        regime in force: ours (engaged) or the app's own (with the guard's full collections)."""
        s = self._s
        ds, dn = obs.gc_s - s.gc_seen[0], obs.gc_found - s.gc_seen[1]
        s.gc_seen = (obs.gc_s, obs.gc_found)
        if ds < 0 or dn < 0 or s.infeasible:
            return  # a restarted meter, or a heap with nothing to find: no evidence
        if s.applied is not None:
            s.on = (s.on[0] + ds, s.on[1] + dn)
        else:
            s.off = (s.off[0] + ds, s.off[1] + dn)

    def _young_loses(self, now: float) -> str:
        """The release reason if young collections find garbage dearer than full ones did
        (after ``trial_s`` engaged, with enough collector time on both sides), else ''."""
        c, s = self.config, self._s
        (on_s, on_n), (off_s, off_n) = s.on, s.off
        if now - s.engaged_at < c.trial_s or min(on_s, off_s) < c.trial_min_gc_s:
            return ""
        on_yield, off_yield = on_n / on_s / 1000.0, off_n / off_s / 1000.0
        if on_yield >= c.young_worse * off_yield:
            return ""
        return (f"young collections found {on_yield:.0f} objects/ms, full ones "
                f"{off_yield:.0f}: app settings back")  # fmt: skip

    def _choose(self, need: int) -> tuple[str, ...]:
        full_ms = self._s.last_collect_s * 1000.0
        cheap = [
            o
            for o in self._s.options.values()
            if o.expected_bytes > 0 and (full_ms == 0.0 or o.expected_cost_ms < full_ms)
        ]
        cheap.sort(key=lambda o: o.expected_bytes / max(0.01, o.expected_cost_ms), reverse=True)
        chosen: list[str] = []
        got = 0
        for o in cheap:
            if got >= need:
                break
            chosen.append(o.name)
            got += o.expected_bytes
        return tuple(chosen)
