"""Typed publish/subscribe over Redis pub/sub.

:func:`publish` sends a message model as JSON. :class:`Subscription` yields
parsed models; anything malformed, oversized, of an unknown kind or schema
version, or of a kind the subscriber does not expect is counted per channel
(in memory and in the ``hm:{ns}:bus:errors`` hash), logged once per
(channel, reason), and dropped. A bad message is never fatal.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable

import redis
from pydantic import BaseModel

from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import MessageError, parse_message

__all__ = ["Subscription", "publish"]

log = logging.getLogger(__name__)


def publish(client: redis.Redis, channel: str, message: BaseModel) -> int:
    """Publish ``message`` as JSON on ``channel``; return how many subscribers got it."""
    return int(client.publish(channel, message.model_dump_json()))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Subscription:
    """A pub/sub subscription that yields only valid messages of the expected kinds.

    ``expect`` lists the model classes this subscriber accepts; a valid
    message of another kind counts as ``unexpected``. ``errors`` maps
    ``channel`` to the number of messages dropped there.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        channels: Iterable[str],
        expect: tuple[type[BaseModel], ...],
    ) -> None:
        self._client = client
        self._keys = keys
        self._expect = expect
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self.channels = tuple(channels)
        self._pubsub.subscribe(*self.channels)
        self.errors: Counter[str] = Counter()
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
            self._drop(channel, "invalid")
            return None
        try:
            msg = parse_message(data)
        except MessageError as exc:
            self._drop(channel, exc.reason)
            return None
        if not isinstance(msg, self._expect):
            self._drop(channel, "unexpected")
            return None
        self.received += 1
        return channel, msg

    def _drop(self, channel: str, reason: str) -> None:
        self.errors[channel] += 1
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
