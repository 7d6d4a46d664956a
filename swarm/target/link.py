"""The runtime's link to the swarm: finding it, connecting, reconnecting, publishing.

:class:`LinkMixin` is the part of :class:`~hivemind.swarm.target.runtime.Runtime`
that talks to Redis. It finds the swarm (``redis_url``, else ``swarm.json`` in
the state folder while its supervisor runs), opens a client and a subscription
to the target's command channel (read through a capped
:class:`~hivemind.swarm.target.inbox.PushReader`), reconnects with jittered
exponential backoff (50 ms up to 2 s) when Redis goes away, and publishes the
buffered acks in order, sealed with the swarm's key, each dropped from the
buffer only once sent. What these methods raise (``RespError``, ``OSError``)
the runtime's loop catches: it calls ``_lost`` and never lets it reach the app.

Light like the rest of the runtime: no typing, and no socket, select or hiredis
until the first connect.
"""

from __future__ import annotations

import contextlib
import os
import time

from hivemind.swarm.keys import Keys, pick_slot
from hivemind.swarm.lazylog import get_logger
from hivemind.swarm.redis.errors import RespError
from hivemind.swarm.target.inbox import PushReader

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from collections import Counter, deque

    from hivemind.swarm.redis.resp import Connection
    from hivemind.swarm.target.runtime import RuntimeConfig
    from hivemind.swarm.target.trigger import RiseTrigger

__all__ = ["MAX_COMMAND_BYTES", "SCHEMA_VERSION", "LinkMixin", "supervisor_alive"]

SCHEMA_VERSION = 1  # of MemorySample/Ack; hivemind.swarm.messages is never imported here
MAX_COMMAND_BYTES = 64 * 1024

log = get_logger("hivemind.runtime")  # the runtime's logger: imports logging only to say something


class LinkMixin:
    """Connecting to the swarm's Redis and publishing to it; mixed into ``Runtime``."""

    if TYPE_CHECKING:  # what the runtime provides
        config: RuntimeConfig
        name: str
        stats: Counter[str]
        connected: bool
        _client: Connection | None
        _pubsub: Connection | None
        _inbox: PushReader | None
        _outbox: deque[str | bytes]
        _keys: Keys
        _node: str
        _sample_channel: str
        _swarm_pid: int | None
        _backoff: float
        _next_connect: float
        trigger: RiseTrigger

        def _read_learned(self) -> None: ...
        def _log_once(self, key: str, msg: str, *args: object) -> None: ...

    def _seal(self, body: str) -> str | bytes:
        """``body`` sealed with the swarm's key (as is without one: then nobody trusts it)."""
        from hivemind.swarm.seal import seal

        return seal(body, self.config.key) if self.config.key else body

    def _flush(self) -> None:
        """Publish the buffered acks on ``hm:{ns}:acks``, oldest first; disconnected, they wait."""
        if self._client is None:
            return
        while self._outbox:
            self._client.call("PUBLISH", self._keys.acks, self._outbox[0])
            self._outbox.popleft()  # only once it was sent

    def _find_url(self) -> str | None:
        if self.config.redis_url is not None:
            return self.config.redis_url
        if self.config.state_dir is None:
            return None
        from hivemind.swarm.state import read_info

        info = read_info(self.config.state_dir)
        if info is None or info.state != "ready" or not supervisor_alive(info.pid):
            return None  # none yet, or a stale swarm.json left by a killed supervisor
        if self.config.namespace is None:
            self._keys = Keys(info.namespace)
        self._swarm_pid = info.pid
        return info.redis_url

    def _pick_sample_channel(self) -> None:
        """Publish samples on a slot of a benchmarker on this node, if one runs here."""
        assert self._client is not None
        node_slots = self._client.call("HGET", self._keys.sample_nodes, self._node)
        self._sample_channel = self._keys.sample_channel(pick_slot(self.name, node_slots))

    def _connect(self) -> None:
        """Join the swarm if one is found (else try again later); raises if Redis fails."""
        url = self._find_url()
        if url is None:
            self._schedule_reconnect()
            return
        # Here, not at the top: an app with no swarm never loads socket, select or hiredis.
        from hivemind.swarm.redis.resp import RespConnection, open_connection

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
        self._pick_sample_channel()
        if isinstance(pubsub, RespConnection):
            self._inbox = PushReader(pubsub.sock, max_bulk=MAX_COMMAND_BYTES, wake=self.trigger)
        self.connected = True
        self._backoff = 0.0
        self.stats["connects"] += 1
        if self.stats["connects"] > 1:
            log.info("hivemind: reconnected to the swarm")
        with contextlib.suppress(RespError, OSError):
            self._read_learned()
        self._flush()

    def _lost(self, exc: BaseException) -> None:
        """Redis went away: drop both connections and schedule a reconnect."""
        if self.connected:
            self._log_once("lost", "hivemind: lost Redis (%s); protecting locally", exc)
            self.stats["disconnects"] += 1
        self._disconnect()
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._backoff = min(2.0, max(0.05, self._backoff * 2))
        jitter = 0.5 + os.urandom(1)[0] / 510  # 0.5-1.0, without importing random
        self._next_connect = time.monotonic() + self._backoff * jitter

    def _disconnect(self) -> None:
        self.connected = False
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self._inbox = None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                pubsub.close()
        with contextlib.suppress(Exception):
            if client is not None:
                client.close()


def supervisor_alive(pid: int) -> bool:
    """True while the swarm's supervisor ``pid`` runs (a ``swarm.json`` may outlive it)."""
    from hivemind.swarm.procs import pid_alive  # not redis.server: it loads subprocess

    return pid_alive(pid)
