"""The target runtime: one daemon thread inside a guarded process.

``attach()`` starts it. It samples RSS (``/proc/self/statm``, ~14 µs) at
``sample_hz`` (default 20 Hz), publishes :class:`MemorySample` messages
sealed with the swarm's key (:mod:`hivemind.swarm.seal`), keeps its
``hm:{ns}:target:{name}`` hash fresh for ``swarm status``, and carries out
signed commands from ``hm:{ns}:cmd:{name}``, acking each (sealed) with what
it freed, or with ``ok=False`` and the reason it refused it (bad signature,
a reclaim name it never registered, ...). It imports no Ray, and no
redis-py or pydantic until a command arrives: it speaks RESP through
:mod:`hivemind.swarm.redis.resp` (cheaper per sample and in memory), and
validates commands with the message models on first use.

It never raises into, or blocks, the host application: every failure is
logged once and counted. When Redis goes away it keeps acks in a bounded
buffer, reconnects with exponential backoff, and meanwhile protects the
process locally with the seed's adaptive GC rule (and, over the target, a
rate-limited full collection and ``malloc_trim``). With no swarm running it
keeps looking for one (``swarm.json`` in the state folder) and joins when
it appears.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hivemind.agents.gc_profiles import apply_gc_profile, level_with_hysteresis
from hivemind.agents.memtools import current_rss_bytes, malloc_trim
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.resp import Connection, RespError, open_connection
from hivemind.swarm.target.reclaim import ReclaimAction, ReclaimRegistry, default_registry
from hivemind.swarm.target.wiring import ReclaimHook

if TYPE_CHECKING:
    from hivemind.swarm.signing import Verifier

SCHEMA_VERSION = 1  # of MemorySample; hivemind.swarm.messages is imported lazily

__all__ = ["Runtime", "RuntimeConfig", "attach", "current_runtime", "detach"]

log = logging.getLogger("hivemind.runtime")
MB = 1024 * 1024
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-")


@dataclass(frozen=True, slots=True)
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


class Runtime:
    """The guard inside one process. Create it with :func:`attach`."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.name = config.name
        self.target_bytes = int(config.target_mb * MB)
        self.reclaim = ReclaimRegistry(parent=default_registry())
        self.reclaim_hook = ReclaimHook(self.reclaim, self.target_bytes, self.name)
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
        self._verifier: Verifier | None = None  # built with the first command
        self._seq = 0
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
            self._thread = threading.Thread(target=self._run, name="hivemind-runtime", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, flush what is buffered, and remove this target from status."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
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
        if not name or not set(name) <= _NAME_OK or len(name) > 128:
            raise ValueError(f"reclaim action name {name!r}: use letters, digits, _ . : @ / -")
        self.reclaim.register(name, action, cost=cost, keep=keep)
        self._reclaim_names = self.reclaim.names()

    # --- the loop ---------------------------------------------------------
    def _run(self) -> None:
        period = 1.0 / self.config.sample_hz
        next_sample = time.monotonic()
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if self._client is None and now >= self._next_connect:
                    self._connect()
                if now >= next_sample:
                    self._sample()
                    next_sample += period
                    if next_sample < now:  # we fell behind (a long GC): do not burst
                        next_sample = now + period
                wait = max(0.0, next_sample - time.monotonic())
                if self._pubsub is not None:
                    msg = self._pubsub.read_reply(wait)
                    if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                        self._on_command(msg[2])
                else:
                    self._stop.wait(wait)
            except (RespError, OSError) as exc:
                self._lost(exc)
            except Exception as exc:  # never let the guard die silently or raise into the app
                self.stats["internal_errors"] += 1
                self._log_once("internal", "hivemind runtime error (continuing): %r", exc)
                self._stop.wait(0.1)

    def _sample(self) -> None:
        rss = current_rss_bytes()
        self.stats["samples"] += 1
        previous = self.level
        self.level = level_with_hysteresis(previous, rss / MB, self.config.target_mb)
        if self.config.local_gc and self.level != previous:
            apply_gc_profile(self.level)
        # --- reclaim hook (issue 12): finds caches as pressure rises, reclaims over target ---
        reclaimed = self.reclaim_hook.on_sample(rss)
        if reclaimed:
            self.stats["local_reclaims"] += 1
            self.last_action = "reclaim"
            self._outbox.append(self._seal(self.reclaim_hook.local_ack(reclaimed, time.time())))
            rss = current_rss_bytes()
            if self._client is not None:
                self._flush()
        # --- end of the reclaim hook ---
        if self._client is None:
            self._protect_locally(rss)
            return
        self._seq += 1
        # The hot path (20 times a second): a plain dict and one PUBLISH. The
        # subscriber validates it as a MemorySample; building the model here
        # would cost more than the publish itself.
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
            **self.reclaim_hook.sample_fields(),
        }
        self._client.call("PUBLISH", self._keys.samples, self._seal(json.dumps(sample)))
        if time.monotonic() - self._last_status >= self.config.status_every_s:
            self._last_status = time.monotonic()
            if self._swarm_pid is not None and not _supervisor_alive(self._swarm_pid):
                # A SIGKILLed `swarm up` leaves its redis-server running: without
                # this we would stay connected to a swarm with no agents.
                raise RespError(f"the swarm (supervisor pid {self._swarm_pid}) is gone")
            self._reclaim_names = self.reclaim.names()
            key = self._keys.target(self.name)
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
            )  # fmt: skip
            self._client.call("PEXPIRE", key, 5000)

    def _protect_locally(self, rss: int) -> None:
        """With the swarm out of reach: the seed's rule already set the GC profile;
        over the target, also collect and trim, at most once a second."""
        now = time.monotonic()
        if rss > self.target_bytes and now - self._last_local_collect > 1.0:
            self._last_local_collect = now
            gc.collect()
            malloc_trim()
            self.stats["local_collections"] += 1

    def _on_command(self, raw: bytes) -> None:
        received = time.time()
        from hivemind.swarm.messages import Ack, Command, MessageError, parse_message
        from hivemind.swarm.signing import Verifier
        from hivemind.swarm.target.actions import apply_actions

        if self._verifier is None:
            self._verifier = Verifier(self.config.key, self.config.name)
        try:
            cmd = parse_message(raw)
        except MessageError as exc:
            self._refuse(f"malformed_{exc.reason}")
            return
        if not isinstance(cmd, Command):
            self._refuse("unexpected")
            return
        reason = self._verifier.check(cmd)
        if reason is None and any(  # only names this target advertised
            a.kind.value == "reclaim" and self.reclaim.get(a.name or "") is None
            for a in cmd.actions
        ):
            reason = "unknown_reclaim"
        if reason is not None:
            self._refuse(reason)
            refusal = Ack(  # said to the sender, sealed: the optimizer reports why
                command_id=cmd.id,
                decision_id=cmd.decision_id,
                target=self.name,
                ok=False,
                error=reason,
                received_ts=received,
            )
            self._outbox.append(self._seal(refusal.model_dump_json()))
            self._flush()
            return
        results = apply_actions(
            cmd.actions, self.reclaim, self.config.target_mb, self.reclaim_hook.reclaimer
        )
        applied = time.time()
        freed = sum(r.bytes_freed for r in results)
        self.last_action = "+".join(r.kind.value for r in results)
        self.stats["commands"] += 1
        ack = Ack(
            command_id=cmd.id,
            decision_id=cmd.decision_id,
            target=self.name,
            ok=all(r.ok for r in results),
            bytes_freed=freed,
            duration_ms=sum(r.duration_ms for r in results),
            applied_ts=applied,
            received_ts=received,
            sample_ts=cmd.sample_ts,
            results=tuple(results),
            caches=tuple(self.reclaim_hook.reclaimer.report()["caches"][:16]),
        )
        self._outbox.append(self._seal(ack.model_dump_json()))
        self._flush()

    def _seal(self, body: str) -> str | bytes:
        """``body`` sealed with the swarm's key (as is without one: then nobody trusts it)."""
        from hivemind.swarm.seal import seal

        return seal(body, self.config.key) if self.config.key else body

    def _refuse(self, reason: str) -> None:
        self.stats["refused"] += 1
        self.stats[f"refused_{reason}"] += 1
        self._log_once(f"refused_{reason}", "hivemind: refused a command (%s)", reason)
        if self._client is not None:
            with contextlib.suppress(RespError, OSError):
                self._client.call("HINCRBY", self._keys.counters, "refused", 1)
                tkey = self._keys.target_counters(self.name)
                self._client.call("HINCRBY", tkey, "refused", 1)
                self._client.call("HINCRBY", tkey, f"refused_{reason}", 1)

    def _flush(self) -> None:
        if self._client is None:
            return
        while self._outbox:
            self._client.call("PUBLISH", self._keys.acks, self._outbox[0])
            self._outbox.popleft()  # only once it was sent

    # --- connection -------------------------------------------------------
    def _find_url(self) -> str | None:
        if self.config.redis_url is not None:
            return self.config.redis_url
        if self.config.state_dir is None:
            return None
        from hivemind.swarm.state import read_info

        info = read_info(self.config.state_dir)
        if info is None or info.state != "ready" or not _supervisor_alive(info.pid):
            return None  # none yet, or a stale swarm.json left by a killed supervisor
        if self.config.namespace is None:
            self._keys = Keys(info.namespace)
        self._swarm_pid = info.pid
        return info.redis_url

    def _connect(self) -> None:
        url = self._find_url()
        if url is None:
            self._schedule_reconnect()
            return
        client = open_connection(url, timeout_s=1.0)
        pubsub: Connection | None = None
        try:
            client.call("PING")
            pubsub = open_connection(url, timeout_s=1.0)
            pubsub.send("SUBSCRIBE", self._keys.cmd(self.name))
            if pubsub.read_reply(1.0) is None:
                raise RespError("no reply to SUBSCRIBE")
        except Exception:
            client.close()
            if pubsub is not None:
                pubsub.close()
            raise
        self._client, self._pubsub = client, pubsub
        self.connected = True
        self._backoff = 0.0
        self.stats["connects"] += 1
        if self.stats["connects"] > 1:
            log.info("hivemind: reconnected to the swarm")
        self._flush()

    def _lost(self, exc: BaseException) -> None:
        if self.connected:
            self._log_once("lost", "hivemind: lost Redis (%s); protecting locally", exc)
            self.stats["disconnects"] += 1
        self._disconnect()
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._backoff = min(2.0, max(0.05, self._backoff * 2))
        self._next_connect = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)

    def _disconnect(self) -> None:
        self.connected = False
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                pubsub.close()
        with contextlib.suppress(Exception):
            if client is not None:
                client.close()

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(msg, *args)


_current: Runtime | None = None
_lock = threading.Lock()


def _supervisor_alive(pid: int) -> bool:
    from hivemind.swarm.redis.server import pid_alive

    return pid_alive(pid)


def _default_name() -> str:
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    clean = "".join(c if c in _NAME_OK else "-" for c in script)[:60] or "python"
    return f"{clean}-{os.getpid()}"


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def attach(
    target_mb: float | None = None,
    name: str | None = None,
    *,
    redis_url: str | None = None,
    namespace: str | None = None,
    state_dir: Path | str | None = None,
    sample_hz: float | None = None,
    local_gc: bool = True,
) -> Runtime | None:
    """Guard this process: start the runtime thread and return it (once per process).

    Every argument falls back to its ``HIVEMIND_*`` variable, then to the
    swarm recorded in the project's state folder. Returns ``None`` only if
    the runtime could not be built at all (logged; the host never sees an
    exception). Costs one daemon thread and ~1-2 MB.
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        try:
            from hivemind.swarm.paths import default_state_dir
            from hivemind.swarm.secret import read_secret

            folder = Path(state_dir) if state_dir else default_state_dir()
            try:
                key: bytes | None = read_secret(folder, os.environ.get("HIVEMIND_SECRET"))
            except Exception as exc:
                log.warning("hivemind: no command key (%s); commands will be refused", exc)
                key = None
            target = target_mb or _env_float("HIVEMIND_TARGET_MB", 1536.0)
            config = RuntimeConfig(
                name=name or os.environ.get("HIVEMIND_TARGET_NAME") or _default_name(),
                target_mb=float(target),
                redis_url=redis_url or os.environ.get("HIVEMIND_REDIS_URL") or None,
                namespace=namespace or os.environ.get("HIVEMIND_NAMESPACE") or None,
                state_dir=folder,
                key=key,
                sample_hz=sample_hz or _env_float("HIVEMIND_SAMPLE_HZ", 20.0),
                local_gc=local_gc,
            )
            _current = Runtime(config).start()
            atexit.register(_current.stop)
        except Exception as exc:
            log.warning("hivemind: could not attach (%r); the app runs unguarded", exc)
            return None
        return _current


def current_runtime() -> Runtime | None:
    """The runtime :func:`attach` started, if any."""
    return _current


def detach() -> None:
    """Stop the runtime :func:`attach` started (also runs at interpreter exit)."""
    global _current
    with _lock:
        if _current is not None:
            _current.stop()
            atexit.unregister(_current.stop)
            _current = None
