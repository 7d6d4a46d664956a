"""Typed, authenticated publish/subscribe over Redis pub/sub.

:func:`publish` sends a message model as JSON, sealed with the swarm's key
when one is given (:mod:`hivemind.swarm.seal`). :class:`Subscription`
yields parsed models; with a key it first checks each message's seal and
its timestamp (``max_age_s``), so nothing is trusted because it arrived.
Anything unsigned, badly signed, stale, malformed, oversized, of an unknown
kind or schema version, or of a kind the subscriber does not expect is
counted per channel (in memory and in the ``hm:{ns}:bus:errors`` hash),
logged once per (channel, reason), and dropped. :meth:`Subscription.run`
is the one receive loop every agent uses: a handler that raises on one
message is counted (``handler_error``) and the loop goes on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import redis
from pydantic import BaseModel

from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Message, MessageError, parse_message
from hivemind.swarm.seal import SealError, body_unverified, seal, unseal

__all__ = ["Handler", "Subscription", "peek_message", "publish", "wire"]

log = logging.getLogger(__name__)

Handler = Callable[[str, BaseModel], None]


def wire(message: BaseModel, key: bytes | None) -> bytes:
    """The bytes to publish for ``message``: sealed under ``key``, plain JSON without one."""
    body = message.model_dump_json().encode()
    return seal(body, key) if key else body


def publish(client: redis.Redis, channel: str, message: BaseModel, key: bytes | None = None) -> int:
    """Publish ``message`` on ``channel`` (sealed under ``key`` if given); return receivers."""
    return int(client.publish(channel, wire(message, key)))


def peek_message(raw: bytes | str) -> Message:
    """Parse ``raw``, sealed or not, WITHOUT checking any signature.

    Only for observers that never act on what they read (benchmarks, the
    effect runner's listener). Raises :class:`MessageError`.
    """
    return parse_message(body_unverified(raw))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Subscription:
    """A pub/sub subscription that yields only valid, authentic messages of the expected kinds.

    ``expect`` lists the model classes this subscriber accepts, on every
    channel or (a mapping) per channel; a valid message of another kind
    counts as ``unexpected``. With ``key``, every
    message must be sealed under it and carry a ``ts`` within ``max_age_s``
    of now (``unsigned``, ``bad_signature``, ``stale`` otherwise); without
    one, plain JSON is accepted (a subscriber that never leads to an
    action). ``errors`` maps channel to messages dropped there, ``reasons``
    reason to the same, ``dropped`` (channel, reason) to the same.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        channels: Iterable[str],
        expect: tuple[type[BaseModel], ...] | Mapping[str, tuple[type[BaseModel], ...]],
        *,
        key: bytes | None = None,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self.channels = tuple(channels)
        self._expect = (
            dict(expect) if isinstance(expect, Mapping) else dict.fromkeys(self.channels, expect)
        )
        self._key = key
        self._max_age = max_age_s
        self._clock = clock
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(*self.channels)
        self.errors: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()  # (channel, reason)
        self.received = 0
        self._logged: set[tuple[str, str]] = set()

    def get(self, timeout_s: float = 1.0) -> tuple[str, BaseModel] | None:
        """Wait up to ``timeout_s`` for one valid message; return ``(channel, message)``.

        Returns ``None`` on timeout or when the message that arrived was
        dropped. Connection errors propagate (the caller owns reconnecting).
        """
        raw = self._pubsub.get_message(timeout=timeout_s)
        if raw is None or raw.get("type") not in ("message", "pmessage"):
            return None
        channel = _text(raw["channel"])
        data = raw["data"]
        if not isinstance(data, bytes | str):
            self.drop(channel, "invalid")
            return None
        if self._key is not None:
            try:
                data = unseal(data, self._key)
            except SealError as exc:
                self.drop(channel, exc.reason)
                return None
        try:
            msg = parse_message(data)
        except MessageError as exc:
            self.drop(channel, exc.reason)
            return None
        if not isinstance(msg, self._expect.get(channel, ())):
            self.drop(channel, "unexpected")
            return None
        if self._key is not None and abs(self._clock() - msg.ts) > self._max_age:
            self.drop(channel, "stale")
            return None
        self.received += 1
        return channel, msg

    def run(
        self,
        handler: Handler,
        stopping: Callable[[], bool],
        *,
        tick: Callable[[], None] | None = None,
        timeout_s: float = 0.5,
    ) -> None:
        """Call ``handler(channel, message)`` for each valid message until ``stopping()``.

        ``tick`` runs after every wait (housekeeping such as sweeps). A
        handler or tick that raises is counted as ``handler_error`` (logged
        once) and the loop carries on; only a lost connection ends it (the
        caller restarts it). The subscription is closed on the way out.
        """
        try:
            while not stopping():
                got = self.get(timeout_s)
                if got is not None:
                    channel, msg = got
                    self._guarded(channel, handler, channel, msg)
                if tick is not None:
                    self._guarded("tick", tick)
        finally:
            self.close()

    def _guarded(self, channel: str, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception as exc:  # one bad message must never restart the loop
            self.drop(channel, "handler_error")
            if ("handler", type(exc).__name__) not in self._logged:
                self._logged.add(("handler", type(exc).__name__))
                log.warning("handler failed on %s: %r (further ones counted)", channel, exc)

    def drop(self, channel: str, reason: str) -> None:
        """Count (and log once) a message dropped on ``channel`` for ``reason``."""
        self.errors[channel] += 1
        self.reasons[reason] += 1
        self.dropped[(channel, reason)] += 1
        if (channel, reason) not in self._logged:
            self._logged.add((channel, reason))
            log.warning(
                "dropped a %s message on %s (further ones counted, not logged)", reason, channel
            )
        # If Redis is away the in-memory counter still has it.
        with contextlib.suppress(redis.RedisError):
            self._client.hincrby(self._keys.bus_errors, channel, 1)

    def close(self) -> None:
        """Unsubscribe and release the connection."""
        with contextlib.suppress(redis.RedisError):
            self._pubsub.close()
