"""The target runtime: one daemon thread inside a guarded process.

:func:`~hivemind.swarm.target.attach.attach` starts it. It samples RSS
(``/proc/self/statm``, ~14 µs) at ``sample_hz`` (default 20 Hz; 2 Hz while
the target is infeasible, when nothing is due until RSS falls; while far
under it with nothing under way, a whole sample a second: the helper
process of :mod:`~hivemind.swarm.target.watcher` reads RSS at ``sample_hz``
meanwhile and wakes this thread when it reaches 70 % of the target, or,
if it cannot run, this thread reads RSS alone at 10 Hz: :meth:`Runtime._calm`), publishes
:class:`MemorySample` messages sealed with the swarm's key
(:mod:`hivemind.swarm.seal`) (each one under pressure; when calm or
infeasible, what changed and a heartbeat a second:
:mod:`~hivemind.swarm.target.heartbeat`), keeps its
``hm:{ns}:target:{name}`` hash fresh for ``swarm status``, and carries out
signed commands from ``hm:{ns}:cmd:{name}``, acking each (sealed) with what
it freed, or with ``ok=False`` and the reason it refused an authentic one
(stale, replayed, wrong target, a reclaim name it never registered):
:mod:`~hivemind.swarm.target.commands`. It imports no Ray, no redis-py and
no pydantic, ever: it speaks RESP through :mod:`hivemind.swarm.redis.resp`
(connecting and publishing: :mod:`~hivemind.swarm.target.link`), reads its
command channel with a capped reader (:mod:`~hivemind.swarm.target.inbox`),
checks each command's HMAC on the raw bytes before decoding anything
(:mod:`~hivemind.swarm.target.envelope`) and builds samples and acks as
plain dicts with the message models' fields.

The fast loop lives here: at every sample the in-target
:class:`~hivemind.swarm.target.controller.Controller` steers the
collector's thresholds and the guard's own full collections from the
headroom and the measured cost (:mod:`~hivemind.swarm.target.cost`), with
no round trip; the swarm chooses strategy, reclaims caches and records.
Near the target RSS is read between samples by the app's own collections
when it runs some (:mod:`~hivemind.swarm.target.trigger`: no GIL hand-off;
this thread then sleeps until a sample is due or they wake it), else by a
helper process at 200 Hz-1 kHz that wakes this thread when RSS got there
(:mod:`~hivemind.swarm.target.watcher`), or by this thread if that helper
could not start. After one of its collections that found garbage it freezes
what survived (``gc.freeze()``; :mod:`~hivemind.swarm.target.freezer`): the
next ones walk only what is new, every third walks everything, and any full
collection the app runs itself, a fork, the guard's stop or the end of
pressure gives the heap back unfrozen.

It never raises into, or blocks, the host application: every failure is
logged once and counted. When Redis goes away it keeps acks in a bounded
buffer and reconnects with exponential backoff; the controller guards the
process all along. With no swarm running it keeps looking for one
(``swarm.json`` in the state folder) and joins when it appears. A forked
child (pre-fork servers) drops the parent's connections and guards itself
under its own name and pid.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from hivemind.agents.gc_profiles import level_with_hysteresis
from hivemind.agents.memtools import current_rss_bytes, malloc_trim, malloc_trim_available
from hivemind.swarm.env import env_str
from hivemind.swarm.keys import Keys, pick_slot
from hivemind.swarm.lazylog import get_logger
from hivemind.swarm.record import frozen
from hivemind.swarm.redis.errors import RespError
from hivemind.swarm.target.commands import CommandsMixin
from hivemind.swarm.target.controller import (
    CTL_T0_SETTING,
    Controller,
    GCSettings,
    Observation,
    Plan,
    ReclaimOption,
)
from hivemind.swarm.target.cost import CostMeter, EffectTracker
from hivemind.swarm.target.freezer import Freezer
from hivemind.swarm.target.heartbeat import SampleGate
from hivemind.swarm.target.inbox import PushReader
from hivemind.swarm.target.link import SCHEMA_VERSION, LinkMixin, supervisor_alive
from hivemind.swarm.target.reclaim import ReclaimAction, ReclaimRegistry, default_registry
from hivemind.swarm.target.trigger import CHECK_GAP_S, RiseTrigger
from hivemind.swarm.target.watcher import RssWatcher
from hivemind.swarm.target.wiring import ReclaimHook
from hivemind.swarm.vocab import LEVELS

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from hivemind.swarm.redis.resp import Connection
    from hivemind.swarm.target.envelope import CommandVerifier

COLLECT_TRIES = 5  # a collection that found the app's own under way: tries, 2 ms apart
NEAR_FRACTION = 0.7  # of the target: from here on RSS is also checked at FAST_CHECK_HZ
FAST_CHECK_HZ = 200.0  # an RSS read (~15 µs) and a controller step, nothing published
IMMINENT_CHECK_HZ = 1000.0  # ... while RSS rises fast toward the collect band, not yet in it
RISE_STEP = 0.01  # of the target: the app's collections wake the guard after this rise ...
LEVEL_EDGES = (0.7, 0.9, 1.0)  # ... or at the next level's edge (vocab.level_for) or the band
TRUST_S = 1.0  # the app's automatic collections read RSS this recently: the guard does not poll
INFEASIBLE_SAMPLE_HZ = 2.0  # flagged infeasible, nothing to do until RSS falls: sample slower
CALM_WHOLE_S = 1.0  # calm (see Runtime._calm): a whole sample at least this often, else RSS only
CALM_SLOWER = 2.0  # ... and RSS read at sample_hz / this (10 Hz by default) ...
# ... or, once calm this long, by the watcher process at sample_hz (see Runtime._calm_watch)
CALM_WATCH_AFTER_S = 1.0
CALM_GAP_S = 0.01  # ... and by the app's own collections at most this often (the trigger)

__all__ = [
    "NAME_CHARS",
    "Runtime",
    "RuntimeConfig",
    "holdings",
    "valid_target_name",
]

log = get_logger("hivemind.runtime")  # imports logging only to say something
MB = 1024 * 1024
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-")


def valid_target_name(name: str) -> bool:
    """True if ``name`` can name a target: 1-128 of letters, digits and ``_ . : @ / -``."""
    return 0 < len(name) <= 128 and set(name) <= NAME_CHARS


@frozen
class RuntimeConfig:
    """Where the runtime reports and how often; see :func:`attach`."""

    name: str
    target_mb: float
    redis_url: str | None
    namespace: str | None  # None: follow the swarm found in the state folder
    state_dir: Path | None
    key: bytes | None
    sample_hz: float = 20.0
    local_gc: bool = True
    buffer_size: int = 1000
    status_every_s: float = 1.0


class Runtime(CommandsMixin, LinkMixin):
    """The guard inside one process. Create it with :func:`attach`."""

    def __init__(self, config: RuntimeConfig, *, app_gc: GCSettings | None = None) -> None:
        self.config = config
        self.name = config.name
        self.target_bytes = int(config.target_mb * MB)
        self.reclaim = ReclaimRegistry(parent=default_registry())
        self.reclaim_hook = ReclaimHook(self.reclaim, self.target_bytes, self.name)
        self._hook_version: tuple[int, int] = (-1, 0)
        self.stats: Counter[str] = Counter()
        self.level = "conservative"
        self.last_action = ""
        self.connected = False
        self._outbox: deque[str | bytes] = deque(maxlen=config.buffer_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Connection | None = None
        self._pubsub: Connection | None = None
        self._redis_url = config.redis_url
        self._keys = Keys(config.namespace or "default")
        self._node = env_str("node") or os.uname().nodename
        self._sample_channel = self._keys.sample_channel(pick_slot(self.name))
        self._verifier: CommandVerifier | None = None  # built with the first command
        self._inbox: PushReader | None = None
        self.meter = CostMeter()
        self.effects = EffectTracker(self.meter)
        self.controller = Controller()
        self.freezer = Freezer(allowed=env_str("freeze") != "0")  # HIVEMIND_FREEZE=0: never
        self.meter.on_app_full = self.freezer.on_app_full_collection
        self._app_gc = app_gc  # a forked child: the parent app's own settings
        self.reclaim_options: list[ReclaimOption] = []
        # (start, end, what) in wall-clock seconds, for benchmarks and `explain`
        self.actions_log: deque[tuple[float, float, str]] = deque(maxlen=256)
        self._near = False  # RSS at NEAR_FRACTION of the target: check at FAST_CHECK_HZ
        self._last_read = (0.0, 0)  # (monotonic time, RSS) of the last reading
        self._growth = 0.0  # recent RSS growth, bytes per second (see _track_growth)
        self._calm_ok = False  # the last whole sample found nothing under way (see _calm)
        self._whole_at = float("-inf")  # when the last whole sample ran
        self._calm_since = float("inf")  # when whole samples began to find the guard calm
        self._calm_watched = False  # the watcher reads RSS for calm samples (_calm_watch)
        self._check_s = 1.0 / FAST_CHECK_HZ  # the fast check's period (see _update_near)
        self._watch_at = 0  # the RSS level the trigger and the watcher wake us at (_arm)
        self.trigger = RiseTrigger()  # RSS read after the app's own collections (no hand-off)
        self._seen_wakes = (0, 0)  # (trigger.fired, trigger.drained) at the guard's last look
        # reads RSS from a helper process (no hand-off); HIVEMIND_WATCHER=0: never
        self.watcher = RssWatcher(allowed=env_str("watcher") != "0")
        self._cost: dict[str, object] = {"controller": "idle"}
        self._last_cost = 0.0
        self._last_learned_read = 0.0
        self._infeasible_logged = False
        self._seq = 0
        self._gate = SampleGate(self.target_bytes)  # which samples are news
        self._backoff = 0.0
        self._next_connect = 0.0
        self._logged: set[str] = set()
        self._last_local_collect = 0.0
        self._last_status = 0.0
        self._pid = os.getpid()
        self._reclaim_names: tuple[str, ...] = ()
        self._swarm_pid: int | None = None  # the supervisor whose swarm.json we joined

    # --- public -----------------------------------------------------------
    def start(self) -> Runtime:
        """Start the sampling thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            # Load ctypes and libc's functions here, not later in the guard thread: an
            # import there, under pressure beside a busy app, waits on the GIL per file.
            current_rss_bytes()
            malloc_trim_available()
            self.reclaim_hook.warm_up()
            self.meter.start()
            self.trigger.open()
            self._thread = threading.Thread(target=self._run, name="hivemind-runtime", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, flush what is buffered, and remove this target from status."""
        self._stop.set()
        self.trigger.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.meter.stop()
        if self._thread is None or not self._thread.is_alive():  # else it may still wait on it
            self.trigger.close()
            self.watcher.close()
        with contextlib.suppress(Exception):
            self._release_gc()
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._flush()
                self._client.call("DEL", self._keys.target(self.name))
        self._disconnect()

    def register_reclaim(
        self,
        name: str,
        action: Callable[[], int | None] | ReclaimAction,
        *,
        cost: float | None = None,
        keep: bool | None = None,
    ) -> None:
        """Register a named reclaim action (see :mod:`hivemind.swarm.target.reclaim`)."""
        if not valid_target_name(name):  # reclaim names follow the target names' rule
            raise ValueError(f"reclaim action name {name!r}: use letters, digits, _ . : @ / -")
        self.reclaim.register(name, action, cost=cost, keep=keep)
        self._reclaim_names = self.reclaim.names()

    @property
    def infeasible(self) -> bool:
        """True while live data alone exceeds the target (the controller said so)."""
        return self.controller.infeasible

    @property
    def near(self) -> bool:
        """True while RSS is near the target (from 70 % of it, or sooner when it grows
        fast): RSS is then also read between samples, so that reaching the collect band
        is acted on within milliseconds. Far under it, a jump past the band is seen at
        the next sample (50 ms apart), or while calm at the watcher's next reading
        (50 ms apart), or at the next calm sample (100 ms apart: the first calm second,
        while the watcher starts, or if it cannot run)."""
        return self._near

    def set_reclaim_options(self, options: list[ReclaimOption]) -> None:
        """Offer registered reclaim actions to the in-target controller, with expectations.

        Each :class:`ReclaimOption` names a registered action and what it is
        expected to free and cost; the controller runs the ones cheaper than
        a full collection first when memory must be freed (see
        :mod:`hivemind.swarm.target.controller`). Safe from any thread.
        """
        self.reclaim_options = list(options)

    # --- the loop ---------------------------------------------------------
    def _run(self) -> None:
        # Our own collections (and commands') are no sign that the app collects as it
        # grows: an app that disabled its collector must still be polled.
        self.trigger.ignore_thread = threading.get_ident()
        # A write to a watcher that died must come back as EPIPE, not as SIGPIPE: an app
        # that restored its default action (CLI tools do, for `| head`) would be killed.
        # Blocked in this thread only: the signal is directed at the thread that wrote.
        with contextlib.suppress(Exception):
            import signal

            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        next_sample = next_check = time.monotonic()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if self._client is None and now >= self._next_connect:
                    self._connect()
                seen = (self.trigger.fired, self.trigger.drained)
                woken = seen != self._seen_wakes  # RSS reached the armed level
                self._seen_wakes = seen
                # Near the target RSS is read between samples by the app's own collections
                # (RiseTrigger); while they are quiet (a disabled collector runs none as
                # the app grows, whatever explicit gc.collect() it made a moment ago), by
                # the watcher process, or by us: each of our wake-ups costs a busy app a
                # GIL hand-off, theirs none.
                polling = self._near and (
                    now - self.trigger.read_at > TRUST_S or not gc.isenabled()
                )
                if polling:
                    level, every = self._watch_at, self._check_s
                else:  # calm for a second: the mark, at the sampling rate (else 0)
                    level, every = self._calm_watch(now), 1.0 / self.config.sample_hz
                watched = self._watch(level, every, woken)
                self._calm_watched = watched and not polling
                if watched and polling:
                    polling = False
                elif self._calm_watched and woken:  # RSS reached the calm mark: look now
                    next_sample = now
                if now >= next_sample:
                    self._sample()
                    period = self._sample_period()  # by what the sample found
                    next_sample += period
                    if next_sample < now:  # we fell behind (a long GC): do not burst
                        next_sample = now + period
                    next_check = time.monotonic() + self._check_s
                elif woken or (polling and now >= next_check):
                    self._fast_check()
                    next_check = time.monotonic() + self._check_s
                due = min(next_sample, next_check) if polling else next_sample
                wait = max(0.0, due - time.monotonic())
                msg = None
                if self._inbox is not None:
                    msg = self._inbox.read(wait)
                elif self._pubsub is not None:
                    msg = self._pubsub.read_reply(wait)
                if self._inbox is not None or self._pubsub is not None:
                    if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                        self._calm_ok = False  # whatever it did, the next sample is whole
                        self._on_command(msg[2] if isinstance(msg[2], bytes) else b"")
                        # ... and comes at the full rate (calm ones may be a second apart)
                        next_sample = min(next_sample, time.monotonic() + 1 / self.config.sample_hz)
                else:
                    self._idle(wait)
            except (RespError, OSError) as exc:
                self._lost(exc)
            except Exception as exc:  # never let the guard die silently or raise into the app
                self.stats["internal_errors"] += 1
                self._log_once("internal", "hivemind runtime error (continuing): %r", exc)
                self._stop.wait(0.1)

    def _sample_period(self) -> float:
        """Seconds between samples: ``1 / sample_hz``; while infeasible (live data over
        the target: no collection until RSS falls, or a probe seconds away), at most
        INFEASIBLE_SAMPLE_HZ; while calm (:meth:`_calm`), ``CALM_SLOWER`` times longer,
        or CALM_WHOLE_S while the watcher process reads RSS for us (:meth:`_calm_watch`).
        Each sample is a wake-up of this thread in a busy app, and a tool over its
        target, or far under it, should run as fast as it does unguarded."""
        hz = self.config.sample_hz
        if self.controller.infeasible:
            hz = min(hz, INFEASIBLE_SAMPLE_HZ)
        elif self._calm_watched and self._calm_ok:  # a sample that found more ends it
            return CALM_WHOLE_S
        elif self._calm_ok and self._calm_room(self._last_read[1]):
            hz /= CALM_SLOWER
        return 1.0 / hz

    def _calm_watch(self, now: float) -> int:
        """The RSS level the watcher process should wake us at while calm, or 0 (not calm
        for CALM_WATCH_AFTER_S yet, or RSS already there): 70 % of the target less two
        samples' worth of recent growth, the mark from which fast checks start
        (:meth:`_update_near`). It then reads RSS at ``sample_hz`` in its own process and
        this thread samples once a second: beside a CPU-bound app each wake-up of it
        costs the app more than the sample's own ~200 µs (a GIL hand-off, run cold).
        Not on a command connection read through redis-py (TLS): we wait on it with no
        wake pipe beside it, so a wake-up could come a second late."""
        if not self._calm_ok or now - self._calm_since < CALM_WATCH_AFTER_S:
            return 0
        if self._pubsub is not None and self._inbox is None:
            return 0  # its wake-up could not end our wait on that connection (TLS)
        mark = int(self._near_mark())
        return mark if self._last_read[1] < mark else 0

    def _watch(self, level: int, every_s: float, woken: bool) -> bool:
        """Have the watcher process wake us when RSS reaches ``level`` bytes, reading it
        every ``every_s`` (started the first time; disarmed at 0). True if it reads it;
        False if not wanted, or if it could not start (then we read it ourselves)."""
        watcher = self.watcher
        if not level:
            watcher.arm(0, 0.0)
            return False
        if not watcher.start(self.trigger.wake_fd()):
            return False
        if woken:  # it may have fired and disarmed itself: send the level again
            watcher.rearm()
        watcher.arm(level, every_s)
        return watcher.running

    def _idle(self, wait: float) -> None:
        """With no swarm: wait ``wait`` seconds, or until the trigger, the watcher (or
        ``stop``) wakes us."""
        if self.watcher.running:  # it writes to the trigger's pipe: wait on that
            import select  # only once the watcher ran: a calm guard loads no select

            if select.select([self.trigger.fileno()], [], [], wait)[0]:
                self.trigger.event.clear()
                self.trigger.drain()
            return
        event = self.trigger.event
        if event.wait(wait):
            event.clear()  # before the loop reads trigger.fired: no wake-up is lost

    def _sample(self, urgent: bool = False) -> None:
        """One 20 Hz sample: control, reclaim hook, publish, status. When the level
        rose (or ``urgent``: the fast check saw it rise), the sample is published
        first, so the swarm hears of it before we collect. A calm one only reads RSS
        (:meth:`_calm`)."""
        rss = current_rss_bytes()
        self.stats["samples"] += 1
        now = time.monotonic()
        if not urgent and self._calm(now, rss):
            self.stats["calm_samples"] += 1
            return
        self._whole_at = now
        level = level_with_hysteresis(self.level, rss / MB, self.config.target_mb)
        urgent = urgent or LEVELS.index(level) > LEVELS.index(self.level)  # it rose
        self.level = level
        if urgent and self._client is not None:
            self._publish_sample(rss, now)
        if now - self._last_cost >= 1.0:
            self._last_cost = now
            self._refresh_cost()
        self.effects.observe(now)
        self._update_near(now, rss)
        if self.config.local_gc:
            self._control(now, rss)
        self._poll_effect(now)
        # --- reclaim hook (issue 12): finds caches as pressure rises; reclaims over the
        # target itself only when the controller is off (it runs them through _collect) ---
        reclaimed = self.reclaim_hook.on_sample(rss, decide=not self.config.local_gc)
        if reclaimed:
            self.stats["local_reclaims"] += 1
            self.last_action = "reclaim"
            self._outbox.append(self._seal(self.reclaim_hook.local_ack(reclaimed, time.time())))
            rss = current_rss_bytes()
            if self._client is not None:
                self._flush()
        # --- end of the reclaim hook ---
        self._settle_calm()
        if self._client is None:
            return
        if not urgent:
            self._publish_sample(rss, now, gated=True)
        if time.monotonic() - self._last_status >= self.config.status_every_s:
            self._write_status(now, rss)

    def _publish_sample(self, rss: int, now: float, gated: bool = False) -> None:
        """The hot path (up to 20 times a second): a plain dict and one PUBLISH.
        The subscriber validates it as a MemorySample; building the model here
        would cost more than the publish itself. ``gated``: only if the sample is
        news (:mod:`~hivemind.swarm.target.heartbeat`); a calm guard sends a heartbeat."""
        if self._client is None:
            return
        fields = self.reclaim_hook.sample_fields()
        holds = holdings()
        names = self._reclaim_names
        news = (self.level, self._cost.get("controller"), *fields.values(), names, holds)
        busy = self.level != LEVELS[0] and not self.controller.infeasible
        if gated and not self._gate.due(now, rss, news, busy=busy):
            return
        self._gate.sent(now, rss, news)
        self.stats["published"] += 1
        self._seq += 1
        sample = {
            "v": SCHEMA_VERSION,
            "ts": time.time(),
            "kind": "sample",
            "target": self.name,
            "pid": self._pid,
            "seq": self._seq,
            "rss_bytes": rss,
            "target_bytes": self.target_bytes,
            "reclaim_actions": self._reclaim_names[:32],
            **fields,
            "holds": holds,
            "cost": self._cost,
        }
        self._client.call("PUBLISH", self._sample_channel, self._seal(json.dumps(sample)))

    def _write_status(self, now: float, rss: int) -> None:
        """Once a second: the target's status hash, and what changes slowly."""
        if self._client is None:
            return
        self._last_status = time.monotonic()
        self._pick_sample_channel()
        if self._swarm_pid is not None and not supervisor_alive(self._swarm_pid):
            # A SIGKILLed `swarm up` leaves its redis-server running: without
            # this we would stay connected to a swarm with no agents.
            raise RespError(f"the swarm (supervisor pid {self._swarm_pid}) is gone")
        self._reclaim_names = self.reclaim.names()
        key = self._keys.target(self.name)
        cost = self._cost
        self._client.call(
            "HSET", key,
            "name", self.name,
            "pid", self._pid,
            "rss_bytes", rss,
            "target_bytes", self.target_bytes,
            "level", self.level,
            "last_action", self.last_action,
            "last_seen", time.time(),
            "reclaim", self.reclaim_hook.status_json(),
            "controller", str(cost["controller"]),
            "threshold0", str(cost.get("threshold0", 0)),
            "gc_ms_per_s", str(cost.get("gc_ms_per_s", 0.0)),
            "pause_p50_ms", str(cost.get("pause_p50_ms", 0.0)),
            "pause_p99_ms", str(cost.get("pause_p99_ms", 0.0)),
            "guard_cpu_pct", str(cost.get("guard_cpu_pct", 0.0)),
            "guard_collections", str(cost.get("collections", 0)),
            "live_over_bytes", str(cost.get("live_over_bytes", 0)),
        )  # fmt: skip
        self._client.call("PEXPIRE", key, 5000)
        if now - self._last_learned_read >= 10.0 and not self.controller.engaged:
            self._read_learned()

    def _fast_check(self) -> None:
        """Between samples, near the target: react within milliseconds. Publishes only
        when the level rose (the swarm hears of a crossing now, not at the next sample)."""
        rss = current_rss_bytes()
        self.stats["fast_checks"] += 1
        level = level_with_hysteresis(self.level, rss / MB, self.config.target_mb)
        if self._client is not None and LEVELS.index(level) > LEVELS.index(self.level):
            self._sample(urgent=True)
            return
        now = time.monotonic()
        self._update_near(now, rss)
        if self.config.local_gc:
            self._control(now, rss)

    def _calm(self, now: float, rss: int) -> bool:
        """True if this sample may stop at reading RSS: the last whole one found nothing
        to follow (:meth:`_settle_calm`), RSS with two calm samples' worth of its recent
        growth is still under 70 % of the target (where the fast checks start), and a
        whole sample ran within CALM_WHOLE_S (the cost meter, status,
        heartbeat and the controller's step keep that pace).

        Why: beside a CPU-bound app each wake-up of this thread runs cold. A whole idle
        sample cost ~250 µs of CPU (``/proc`` schedstat, 20 Hz beside the corpus's CPU
        loop), ~10 µs when warm; a bare thread that wakes and reads RSS ~150-180 µs. So
        a calm sample reads RSS only (~190 µs) and, while calm, samples come at
        ``sample_hz / CALM_SLOWER``; the trigger, armed at the mark, reads RSS after the
        app's own collections (at most every CALM_GAP_S) and wakes us when it got there.
        Once calm for CALM_WATCH_AFTER_S the watcher process reads RSS instead
        (:meth:`_calm_watch`): samples then come once a second, and each is whole."""
        if not self._calm_ok or self._calm_watched or now - self._whole_at >= CALM_WHOLE_S:
            return False
        self._track_growth(now, rss)
        return self._calm_room(rss)

    def _calm_room(self, rss: int) -> bool:
        """RSS with two calm samples' worth of its recent growth is under the calm mark
        (read from ``target_bytes`` now: a new target counts at once)."""
        ahead = self._growth * 2.0 * CALM_SLOWER / self.config.sample_hz
        return rss + ahead < NEAR_FRACTION * self.target_bytes

    def _settle_calm(self) -> None:
        """After a whole sample: whether the next ones may be calm, i.e. nothing is under
        way (level the lowest, not near, the controller idle and feasible, nothing
        frozen, no command's effect pending)."""
        ctl = self.controller
        idle = (
            self.level == LEVELS[0] and not self._near and not ctl.engaged
            and not ctl.infeasible and not self.freezer.owned and self._app_gc is None
            and self.effects.pending_tag is None
        )  # fmt: skip
        self._calm_ok = idle
        if not idle:
            self._calm_since = float("inf")
            return
        self._calm_since = min(self._calm_since, time.monotonic())
        # the app's own collections (if it runs any) tell us when RSS got there
        self.trigger.gap_s = CALM_GAP_S
        self.trigger.arm_bytes = int(NEAR_FRACTION * self.target_bytes)

    def _track_growth(self, now: float, rss: int) -> None:
        """Keep the RSS growth rate, bytes/s: the latest, or the recent peak fading (250 ms)."""
        then, before = self._last_read
        self._last_read = (now, rss)
        dt = now - then
        if dt > 0:
            self._growth = max((rss - before) / dt, self._growth * 0.5 ** (dt / 0.25))

    def _update_near(self, now: float, rss: int) -> None:
        """Check at FAST_CHECK_HZ from NEAR_FRACTION of the target, or sooner when RSS
        grows fast enough to get there before the sample after next: an app allocating
        quickly would otherwise cross the collect band between two 20 Hz samples."""
        self._track_growth(now, rss)
        near = self._near_mark()
        ctl = self.controller  # infeasible, or nothing new to find: no reaction is due
        self._near = rss >= near and not ctl.infeasible and not ctl.nothing_new
        # About to cross the collect band (within two 200 Hz checks at this growth): check
        # at IMMINENT_CHECK_HZ until it is crossed, so the crossing is seen within ~1 ms
        # rather than 5. Only while rising toward the band: flat RSS in it costs nothing more.
        band = self.controller.config.collect * self.target_bytes
        imminent = self._near and rss < band <= rss + self._growth * 2.0 / FAST_CHECK_HZ
        self._check_s = 1.0 / (IMMINENT_CHECK_HZ if imminent else FAST_CHECK_HZ)
        self._arm(rss)

    def _near_mark(self) -> float:
        """RSS from which the guard is near: NEAR_FRACTION of the target, less two
        samples' worth of recent growth."""
        return NEAR_FRACTION * self.target_bytes - self._growth * 2.0 / self.config.sample_hz

    def _arm(self, rss: int) -> None:
        """Near the target, have the app's own collections wake us when RSS rose by
        RISE_STEP of the target from ``rss`` (our latest reading), or reached the
        collect band or the next level's edge; far from it, disarm."""
        arm = 0
        self.trigger.gap_s = CHECK_GAP_S
        if self._near:
            arm = rss + max(1, int(RISE_STEP * self.target_bytes))
            band = self.controller.config.collect * self.target_bytes
            for edge in (band, *(f * self.target_bytes for f in LEVEL_EDGES)):
                if rss < edge < arm:
                    arm = int(edge)
        self.trigger.arm_bytes = self._watch_at = arm

    def _refresh_cost(self) -> None:
        snap = self.meter.tick(self.watcher.cpu_s())  # the helper works for us too
        ctl = self.controller
        cost: dict[str, object] = dict(snap.as_wire())
        cost.update(
            controller=ctl.state() if self.config.local_gc else "off",
            threshold0=gc.get_threshold()[0] if gc.isenabled() else 0,
            held_t0=ctl.held_t0,
            collections=ctl.collections,
            freed_bytes=ctl.freed_bytes,
            live_over_bytes=ctl.live_over_bytes,
        )
        self._cost = cost
        if ctl.infeasible and not self._infeasible_logged:
            self._infeasible_logged = True
            log.warning(
                "hivemind: infeasible: live ~%.0f MB over the %.0f MB target; "
                "futile collections stopped (said once; status shows it live)",
                ctl.live_over_bytes / MB,
                self.config.target_mb,
            )

    # --- the in-target controller -------------------------------------------
    def _control(self, now: float, rss: int) -> None:
        ctl = self.controller
        hook = self.reclaim_hook  # issue 12: discovered caches and plug-ins join the options
        if (hook.version, id(self.reclaim_options)) != self._hook_version:
            self._hook_version = (hook.version, id(self.reclaim_options))
            own = {o.name for o in self.reclaim_options}
            found = [ReclaimOption(*o) for o in hook.options() if o[0] not in own]
            ctl.set_reclaim_options([*self.reclaim_options, *found])
        current = GCSettings(gc.get_threshold(), gc.isenabled())
        if self._app_gc is not None and not ctl.engaged:
            current, self._app_gc = self._app_gc, None
        snap = self.meter.snapshot()
        meter = self.meter
        obs = Observation(now, rss, self.target_bytes, current, snap.gc_ms_per_s,
                          meter.total_s, meter.collected, _fresh_objects())  # fmt: skip
        plan = ctl.step(obs)
        if self.freezer.owned and not ctl.keep_frozen(now):
            self.freezer.thaw()  # pressure ended, or a verdict is due: the app's heap back
        if plan.apply is not None:
            _apply_settings(plan.apply)
            ts = time.time()
            self.actions_log.append((ts, ts, "settings:" + plan.reason.split(";")[0]))
        if plan.reclaim or plan.collect:
            self._collect(now, rss, plan)

    def _collect(self, now: float, rss: int, plan: Plan) -> None:
        started = time.time()
        t0 = time.thread_time()  # what the app pays is the GIL we hold, not our waits
        outcomes = []
        for name in plan.reclaim:  # guarded (timeout), measured, reported on a local ack
            out = self.reclaim_hook.run(name)
            if not out.ok:
                self._log_once(
                    f"reclaim_{name}", "hivemind: reclaim %s failed: %s", name, out.error
                )
            self.controller.reclaimed(name, out.bytes_freed, out.duration_ms)
            outcomes.append(out)
        if outcomes:
            self._outbox.append(self.reclaim_hook.local_ack(outcomes, time.time()))
            if self._client is not None:
                self._flush()
        objects = 0
        ran = False
        trimmed_from: int | None = None  # RSS just before malloc_trim, if it ran
        partial = False  # the collection skips what an earlier one froze
        if plan.collect:
            if plan.thaw:
                self.freezer.thaw()
            partial = self.freezer.owned
            # gc.collect() returns at once when a collection is already under way in
            # another thread (the app's, paused in a finalizer or a gc callback, where
            # the GIL often changes hands): no callback fired, nothing ran, and that is
            # no verdict on the heap. That collection ends within milliseconds: try
            # again shortly (GIL released) rather than at the next sample, 50 ms on.
            for attempt in range(COLLECT_TRIES):
                if attempt:
                    time.sleep(0.002)
                runs = self.meter.count
                self.meter.ours(True)
                try:
                    objects = gc.collect()
                finally:
                    self.meter.ours(False)
                ran = self.meter.count != runs or not self.meter.installed
                if ran:
                    break
            if ran:
                if plan.trim:
                    trimmed_from = current_rss_bytes()
                    malloc_trim()
                self.stats["local_collections"] += 1
        after = current_rss_bytes()
        duration = time.thread_time() - t0
        self._arm(after)  # RSS fell: watch for the next rise from here, not from before
        if trimmed_from is not None:
            self.controller.trimmed(trimmed_from - after)
        if ran:
            ctl = self.controller
            ctl.collected(now, rss - after, duration, after, self.target_bytes, objects, partial)
            if ctl.keep_frozen(now):
                self.freezer.freeze()  # the next collections walk only what is new
            else:
                self.freezer.thaw()
        elif plan.collect:
            self.controller.skipped(now)
        what = ("collect+trim" if plan.trim else "collect") if plan.collect else "reclaim"
        self.last_action = "local:" + what
        self.actions_log.append((started, time.time(), self.last_action))

    def _release_gc(self) -> None:
        """Give the app its own GC settings (and unfrozen heap) back (at stop, or in a
        forked child)."""
        self.freezer.thaw()
        app = self.controller.app_settings
        if self.controller.engaged and app is not None:
            _apply_settings(app)

    def _read_learned(self) -> None:
        """Start the controller where this target's session learned it holds cheapest."""
        self._last_learned_read = time.monotonic()
        if self._client is None:
            return
        sid = self._client.call("HGET", self._keys.swarm, "session_id")
        if not sid:
            return
        sid_text = sid.decode() if isinstance(sid, bytes) else str(sid)
        raw = self._client.call(
            "HGET", self._keys.session(sid_text), "setting." + CTL_T0_SETTING + self.name
        )
        try:
            learned = int(raw) if raw else 0
        except ValueError:
            return
        if 0 < learned <= 1 << 30:
            self.controller.learned_t0 = learned

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(msg, *args)


def holdings() -> tuple[str, ...]:
    """Which of ``"caches"`` and ``"pools"`` this process has alive: the hivemind
    render caches and object pools that the swarm's ``evict_caches`` and
    ``trim_pools`` act on (their modules are only loaded if the app created one)."""
    held: list[str] = []
    caches = sys.modules.get("hivemind.agents.render_cache")
    if caches is not None and caches.live_caches():
        held.append("caches")
    pools = sys.modules.get("hivemind.agents.pool")
    if pools is not None and pools.live_pools():
        held.append("pools")
    return tuple(held)


def _fresh_objects() -> int:
    """How many objects the collector tracks were made (net of those freed) since its
    last full collection, at most: each generation's count times the allocations one
    of its counts stands for. Objects older than that were walked by it and found live."""
    c0, c1, c2 = gc.get_count()
    t0, t1, _ = gc.get_threshold()
    return c0 + c1 * max(1, t0) + c2 * max(1, t0) * max(1, t1)


def _apply_settings(settings: GCSettings) -> None:
    gc.set_threshold(*settings.thresholds)
    if settings.enabled:
        gc.enable()
    else:
        gc.disable()
