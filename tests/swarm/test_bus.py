"""Bus round trip over the real embedded server, sealed messages, malformed-message counting,
and the one receive loop (``Subscription.run``) surviving a handler that raises."""

from __future__ import annotations

import threading
import time

import redis
from pydantic import BaseModel

from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Control, Level, PressureEvent
from hivemind.swarm.redis.bus import Subscription, peek_message, publish, wire


def _event(target: str = "app") -> PressureEvent:
    now = time.time()
    return PressureEvent(
        target=target,
        level=Level.AGGRESSIVE,
        previous=Level.BALANCED,
        rss_bytes=900 << 20,
        target_bytes=1000 << 20,
        sample_ts=now,
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
            Control(op="restore", session_id="s").model_dump_json().encode(),  # wrong kind
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


KEY = b"k" * 32


def test_sealed_round_trip_and_forgeries_dropped(client: redis.Redis, keys: Keys) -> None:
    sub = Subscription(client, keys, [keys.events], expect=(PressureEvent,), key=KEY)
    try:
        old = _event("old").model_copy(update={"ts": time.time() - 3600})
        forged = [
            _event("plain").model_dump_json().encode(),  # unsigned
            wire(_event("other-key"), b"x" * 32),  # bad_signature
            wire(_event("tampered"), KEY).replace(b"tampered", b"tampereD"),  # bad_signature
            wire(old, KEY),  # stale
        ]
        for raw in forged:
            client.publish(keys.events, raw)
        good = _event("sealed")
        assert publish(client, keys.events, good, KEY) == 1
        assert _next(sub, 5.0) == (keys.events, good)
        assert sub.reasons == {"unsigned": 1, "bad_signature": 2, "stale": 1}
        assert peek_message(wire(good, KEY)) == good  # observers can read without the key
    finally:
        sub.close()


def test_run_survives_a_handler_that_raises(client: redis.Redis, keys: Keys) -> None:
    sub = Subscription(client, keys, [keys.events], expect=(PressureEvent,))
    seen: list[str] = []
    stop = threading.Event()

    def handler(channel: str, msg: BaseModel) -> None:
        assert isinstance(msg, PressureEvent)
        if msg.target == "boom":
            raise OverflowError("value is not an integer or out of range")
        seen.append(msg.target)

    thread = threading.Thread(target=sub.run, args=(handler, stop.is_set), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while client.pubsub_numsub(keys.events)[0][1] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        for target in ("a", "boom", "b"):
            publish(client, keys.events, _event(target))
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["a", "b"]
        assert sub.reasons["handler_error"] == 1
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(2)
