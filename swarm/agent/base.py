"""What every agent actor shares: its Redis connection, heartbeat and threads.

:class:`AgentCore` is plain Python (no Ray import), so its behaviour is
tested without Ray; :mod:`hivemind.swarm.agent.facade` wraps a subclass in a Ray
actor. An agent writes its heartbeat to ``hm:{ns}:agent:{name}`` (a hash
with a TTL, read by ``swarm status`` without Ray). Restarts after a crash
are counted in Redis. :meth:`AgentCore.subscribe` gives an agent its one
receive loop (:class:`~hivemind.swarm.redis.bus.Subscription`), checking
every message's seal against the swarm's key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import redis
from pydantic import BaseModel

from hivemind.swarm.env import env_str
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.bus import Handler, Subscription
from hivemind.swarm.redis.connection import connect, strip_password
from hivemind.swarm.vocab import DEFAULT_TARGET_MB

__all__ = [
    "AgentConfig",
    "AgentCore",
    "Role",
    "node_label",
    "node_redis_url",
    "node_secret",
    "remember_secret",
]

log = logging.getLogger(__name__)

Role = Literal["benchmarker", "gc_optimizer", "widget_optimizer", "coordinator"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an agent needs to run; passed to the actor at creation and on restart.

    It is stored in Ray's GCS (the actor's creation arguments), so it holds
    no secret: ``redis_url`` has no password and ``secret_id`` is only a
    fingerprint of the HMAC key. The agent finds both secrets on its own
    node (:func:`node_redis_url`, :func:`node_secret`).
    """

    namespace: str
    redis_url: str = field(repr=False)  # may hold a password: never in a repr or a log
    target_mb: float = DEFAULT_TARGET_MB
    heartbeat_s: float = 1.0
    session_id: str = ""
    stream_maxlen: int = 100_000
    sample_hz: float = 20.0
    state_dir: str = ""
    secret_id: str = ""

    @property
    def heartbeat_ttl_ms(self) -> int:
        """How long a heartbeat hash outlives its agent (status shows it dead meanwhile)."""
        return max(30_000, int(self.heartbeat_s * 30_000))


def node_label() -> str:
    """This machine's name for sample locality: ``HIVEMIND_NODE``, else the hostname.

    A guarded process uses the same rule, so its samples go to a benchmarker
    on its own node (two Ray nodes on one machine need ``HIVEMIND_NODE``).
    """
    return env_str("node") or socket.gethostname()


def _ray_node_id() -> str:
    ray = sys.modules.get("ray")
    if ray is None:
        return ""
    try:
        return str(ray.get_runtime_context().get_node_id() or "")
    except Exception:
        return ""


def node_redis_url(config: AgentConfig) -> str:
    """The Redis URL with its password, found on this node.

    ``HIVEMIND_REDIS_URL`` in the node's environment, else the state folder's
    ``redis-url`` file (0600), whichever matches ``config.redis_url`` once its
    password is stripped; else ``config.redis_url`` itself (no password).
    """
    from hivemind.swarm.secret import REDIS_URL_FILE, read_node_file

    candidates = [env_str("redis_url")]
    if config.state_dir:
        candidates.append(read_node_file(Path(config.state_dir) / REDIS_URL_FILE))
    for url in candidates:
        if url and strip_password(url) == config.redis_url:
            return url
    return config.redis_url


_PROCESS_KEYS: dict[str, bytes] = {}


def remember_secret(key: bytes) -> str:
    """Make ``key`` known to agent cores in this process (in-process swarms); return its id."""
    from hivemind.swarm.secret import fingerprint

    key_id = fingerprint(key)
    _PROCESS_KEYS[key_id] = key
    return key_id


def node_secret(config: AgentConfig) -> bytes:
    """The HMAC key, found on this node: ``HIVEMIND_SECRET`` or the state folder's files.

    The one whose fingerprint is ``config.secret_id``. Raises
    :class:`RuntimeError` when this node has none (the agent then fails to
    start, and ``swarm up`` says which role and node).
    """
    from hivemind.swarm.secret import (
        AGENT_SECRET_FILE,
        SECRET_FILE,
        fingerprint,
        read_node_file,
    )

    if not config.secret_id:
        return b""
    if config.secret_id in _PROCESS_KEYS:
        return _PROCESS_KEYS[config.secret_id]
    candidates = [env_str("secret")]
    if config.state_dir:
        for name in (SECRET_FILE, AGENT_SECRET_FILE):
            candidates.append(read_node_file(Path(config.state_dir) / name))
    for text in candidates:
        if text and fingerprint(text.encode()) == config.secret_id:
            return text.encode()
    raise RuntimeError(
        f"no HMAC key on node {socket.gethostname()}: set HIVEMIND_SECRET in the environment "
        f"of `ray start` there, or share {config.state_dir or 'the state folder'}"
    )


class AgentCore:
    """Base of the four agents: connects, heartbeats, runs named daemon threads.

    Subclasses set ``role`` and may override :meth:`on_start` (start their
    loops with :meth:`spawn`) and :meth:`describe` (extra status fields).
    """

    role: ClassVar[Role]

    def __init__(self, config: AgentConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.keys = Keys(config.namespace)
        #: The swarm's shared secret: seals what this agent publishes, checks what it reads.
        self.secret: bytes | None = node_secret(config) or None
        self.redis = connect(node_redis_url(config), timeout_s=5.0)
        self.pid = os.getpid()
        self.node = node_label()
        self.ray_node = _ray_node_id()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sub: Subscription | None = None
        self.restarts = self._record_start()
        self._beat()
        self.spawn("heartbeat", self._heartbeat_loop)
        self.on_start()

    # --- extension points -------------------------------------------------
    def on_start(self) -> None:
        """Start the agent's own loops; the base starts only the heartbeat."""

    def describe(self) -> dict[str, Any]:
        """Extra fields for status; the base has none."""
        return {}

    # --- public, called through the facade ---------------------------------
    def ping(self) -> dict[str, Any]:
        """Return who and where this agent is; cheap, used for readiness."""
        return {
            "name": self.name,
            "role": self.role,
            "pid": self.pid,
            "node": self.node,
            "host": socket.gethostname(),
            "ray_node": self.ray_node,
            "restarts": self.restarts,
            "started_at": self.started_at,
            **self.describe(),
        }

    def stop(self) -> None:
        """Stop the loops and remove the heartbeat (an orderly shutdown)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        with contextlib.suppress(redis.RedisError):
            self.redis.delete(self.keys.agent(self.name))

    # --- helpers for subclasses -------------------------------------------
    def spawn(self, label: str, target: Callable[[], None]) -> threading.Thread:
        """Run ``target`` in a daemon thread that logs (never dies on) errors."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    target()
                    return
                except Exception:  # a loop must outlive a bad moment
                    log.exception("%s: %s loop failed; restarting it", self.name, label)
                    self._stop.wait(0.5)

        thread = threading.Thread(target=run, name=f"hm-{self.name}-{label}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def subscribe(
        self,
        expect: dict[str, tuple[type[BaseModel], ...]],
        handler: Handler,
        *,
        tick: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        """A loop body for :meth:`spawn`: receive sealed messages, ``expect`` maps each
        channel to the kinds accepted there, ``handler(channel, message)`` gets them.

        Each (re)start subscribes afresh; the live subscription is ``self.sub``
        (its ``errors`` and ``reasons`` count what was dropped and why).
        """

        def loop() -> None:
            self.sub = Subscription(
                self.redis, self.keys, list(expect), expect, key=self.secret or b""
            )
            self.sub.run(handler, lambda: self.stopping, tick=tick)

        return loop

    def bus_errors(self) -> dict[str, int]:
        """Messages this agent dropped (unsigned, stale, malformed, ...), per channel."""
        return dict(self.sub.errors) if self.sub is not None else {}

    # --- internals --------------------------------------------------------
    def _was_restarted(self) -> bool:
        ray = sys.modules.get("ray")
        if ray is None:
            return False
        try:
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
        except Exception:
            return False

    def _record_start(self) -> int:
        if self._was_restarted():
            return int(self.redis.hincrby(self.keys.agent_restarts, self.name, 1))
        raw = self.redis.hget(self.keys.agent_restarts, self.name)
        return int(raw) if raw else 0

    def _beat(self) -> None:
        now = time.time()
        key = self.keys.agent(self.name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "name": self.name,
                "role": self.role,
                "pid": self.pid,
                "node": self.node,
                "restarts": self.restarts,
                "started_at": self.started_at,
                "last_seen": now,
            },
        )
        pipe.pexpire(key, self.config.heartbeat_ttl_ms)  # status shows the dead a while
        pipe.execute()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.heartbeat_s):
            try:
                self._beat()
            except redis.RedisError as exc:
                log.warning("%s: heartbeat failed: %s", self.name, exc)
