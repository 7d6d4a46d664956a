"""Bus round trip over the real embedded server, and malformed-message counting."""

from __future__ import annotations

import time

import redis

from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Heartbeat, Level, PressureEvent
from hivemind.swarm.redis.bus import Subscription, publish


def _event(target: str = "app") -> PressureEvent:
    now = time.time()
    return PressureEvent(
        target=target,
        level=Level.AGGRESSIVE,
        previous=Level.BALANCED,
        rss_bytes=900 << 20,
        target_bytes=1000 << 20,
        sample_ts=now,
        seq=1,
    )


def _next(sub: Subscription, timeout_s: float = 2.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = sub.get(timeout_s=0.1)
        if got is not None:
            return got
    return None


def test_round_trip(client: redis.Redis, keys: Keys) -> None:
    sub = Subscription(client, keys, [keys.events], expect=(PressureEvent,))
    try:
        sent = _event()
        assert publish(client, keys.events, sent) == 1
        got = _next(sub)
        assert got == (keys.events, sent)
        assert sub.received == 1
    finally:
        sub.close()


def test_malformed_messages_are_counted_and_dropped(client: redis.Redis, keys: Keys) -> None:
    sub = Subscription(client, keys, [keys.events], expect=(PressureEvent,))
    try:
        bad = [
            b"not json",
            b"{}",
            b'{"kind": "pressure"}',
            b'{"kind": "nope", "v": 1}',
            _event().model_dump_json().replace('"v":1', '"v":99').encode(),
            b"x" * 70_000,
            Heartbeat(name="a", role="target", pid=1).model_dump_json().encode(),  # wrong kind
            b"\xff\xfe\x00",
        ]
        for raw in bad:
            client.publish(keys.events, raw)
        good = _event("after")
        publish(client, keys.events, good)
        got = _next(sub, 5.0)
        # Every bad one was dropped on the way to the good one.
        assert got == (keys.events, good)
        assert sub.errors[keys.events] == len(bad)
        assert int(client.hget(keys.bus_errors, keys.events) or 0) == len(bad)
    finally:
        sub.close()
