"""Property-based fuzzing of every bus message model and every subscriber.

For each channel at least 10,000 hostile payloads (drawn by hypothesis:
valid models with a mutated field, wrong kinds, wrong versions, random
bytes, huge bodies, deep nesting, unicode, and byte-level derivatives of
each) are published over a real embedded redis-server to the real
subscribers: the coordinator, benchmarker and both optimizer cores, and a
target runtime (``cmd:{target}``). Every channel but ``cmd`` is sealed, so
each payload also goes out in a forger's envelope (unsealed, another key, a
bad body behind the right key, a broken signature: see
:func:`~tests.reliability.fuzz_payloads.authenticated_variant`). Every one
must be dropped and counted (in the subscriber and in Redis), nothing may
run in the target, forged acks may not touch the learned table, no
subscriber may crash or lose its subscription, and each must still act on a
valid sealed message afterwards. The last test sends one sample over the
target through the whole loop and waits for the ack.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import (
    Ack,
    Action,
    ActionKind,
    Command,
    Control,
    Decision,
    Level,
    MemorySample,
    MessageError,
    PressureEvent,
    parse_message,
)
from hivemind.swarm.redis.bus import wire
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.seal import SealError, unseal
from hivemind.swarm.secret import read_secret
from hivemind.swarm.signing import sign
from tests.conftest import wait_for
from tests.reliability.fuzz_payloads import (
    MODELS,
    authenticated_variant,
    hostile_group,
    payloads,
    valid_message,
)
from tests.reliability.inproc import InProcessSwarm

PER_CHANNEL = 10_000
GROUPS_PER_EXAMPLE = 16
GROUP_SIZE = 8
MAX_LAG = 1500  # messages in flight before the publisher waits for the subscriber
RT_NAME = "fuzz-rt"

FIGURES: dict[str, dict[str, int]] = {}


@dataclass
class World:
    server: EmbeddedRedis
    swarm: InProcessSwarm
    client: redis.Redis

    @property
    def keys(self) -> Keys:
        return self.swarm.keys


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("fuzz") / ".hivemind"
    server = EmbeddedRedis(state)
    server.start()
    swarm = InProcessSwarm(
        url=server.url,
        namespace=f"fz{uuid.uuid4().hex[:8]}",
        secret=read_secret(state),
        state_dir=state,
    )
    client = connect(server.url)
    try:
        swarm.start()
        swarm.add_runtime(RT_NAME, target_mb=100_000)  # its own samples never cross a level
        assert wait_for(swarm.subscribed, 10)
        yield World(server, swarm, client)
    finally:
        swarm.stop()
        client.close()
        server.stop()


@dataclass(frozen=True)
class Channel:
    """One channel: what is fuzzed there, which subscriber drops it, and how it counts."""

    label: str
    primary: tuple[type[BaseModel], ...]  # models the mutations start from
    expect: tuple[type[BaseModel], ...]  # what the subscriber accepts (the oracle)
    subscribers: int  # how many subscribers count each drop in Redis
    sealed: bool = True


CHANNELS = {  # each channel takes one kind
    "samples": Channel("samples", (MemorySample,), (MemorySample,), 1),
    "events": Channel("events", (PressureEvent,), (PressureEvent,), 1),
    "acks": Channel("acks", (Ack,), (Ack,), 3),  # the coordinator and both optimizers
    "control": Channel("control", (Control,), (Control,), 1),
    "decisions": Channel("decisions", (Decision,), (Decision,), 1),  # the widget optimizer's
    "cmd": Channel("cmd", (Command,), (), 1, sealed=False),  # refused: unsigned
}


def _redis_name(world: World, label: str) -> str:
    if label == "cmd":
        return world.keys.cmd(RT_NAME)
    if label == "decisions":
        return world.keys.decisions("widget_optimizer")
    return str(getattr(world.keys, label))


def _dropped(world: World, label: str) -> int:
    """How many messages the subscriber(s) of ``label`` have dropped so far (in memory)."""
    ch = _redis_name(world, label)
    s = world.swarm
    if label == "cmd":
        return s.runtimes[0].stats["refused"]
    if label == "samples":
        subs = [s.benchmarker.sub]
    elif label == "decisions":
        subs = [s.cores["widget_optimizer"].sub]
    elif label == "acks":
        subs = [s.coordinator.sub, s.cores["gc_optimizer"].sub, s.cores["widget_optimizer"].sub]
    else:
        subs = [s.coordinator.sub]
    # A genuine message (the runtime's own samples, its acks) that waited over 30 s behind
    # the flood on a loaded machine is dropped as stale; no fuzzed payload is ever stale.
    return min(sub.errors[ch] - sub.dropped[(ch, "stale")] if sub else 0 for sub in subs)


def _reasons(world: World) -> dict[str, dict[str, int]]:
    """Every agent's drops by reason (for failure messages)."""
    return {r: dict(c.sub.reasons) if c.sub else {} for r, c in world.swarm.cores.items()}


def _reason(raw: bytes, key: bytes | None) -> str:
    try:
        parse_message(unseal(raw, key) if key is not None else raw)
    except (MessageError, SealError) as exc:
        return exc.reason
    return "unexpected_or_forged"


def _subscriptions(world: World) -> list[object]:
    subs: list[object] = [c.sub for c in world.swarm.cores.values()]
    subs.append(world.swarm.runtimes[0]._pubsub)
    return subs


@pytest.mark.parametrize("label", list(CHANNELS))
def test_fuzz_channel(world: World, label: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    spec = CHANNELS[label]
    channel = _redis_name(world, label)
    subs_before = _subscriptions(world)
    rt = world.swarm.runtimes[0]
    start_dropped = _dropped(world, label)
    start_redis = int(world.client.hget(world.keys.bus_errors, channel) or 0)
    start_commands = rt.stats["commands"]
    s = world.swarm
    stale_before = sum(c.sub.dropped[(channel, "stale")] for c in s.cores.values() if c.sub)
    store = SessionStore(world.client, world.keys)
    learned_before = store.learned_table(world.swarm.coordinator.session_id)
    sent = 0
    reasons: Counter[str] = Counter()

    @settings(
        max_examples=PER_CHANNEL // (GROUPS_PER_EXAMPLE * GROUP_SIZE) + 5,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(
            hostile_group(spec.primary, GROUP_SIZE),
            min_size=GROUPS_PER_EXAMPLE,
            max_size=GROUPS_PER_EXAMPLE,
        )
    )
    def fuzz(groups: list[list[bytes]]) -> None:
        nonlocal sent
        if spec.sealed:  # every payload in a forger's envelope: all must be dropped
            key = world.swarm.secret
            batch = [
                authenticated_variant(p, sent + i, key, spec.expect)
                for i, p in enumerate(p for g in groups for p in g)
            ]
        else:
            batch = [p for g in groups for p in g]
        pipe = world.client.pipeline(transaction=False)
        for raw in batch:
            pipe.publish(channel, raw)
        pipe.execute()
        sent += len(batch)
        reasons.update(_reason(raw, world.swarm.secret if spec.sealed else None) for raw in batch)
        # Flow control, so the test measures the subscriber and not Redis's output buffer.
        assert wait_for(lambda: _dropped(world, label) - start_dropped >= sent - MAX_LAG, 30, 0.002)

    t0 = time.perf_counter()
    while sent < PER_CHANNEL:
        fuzz()
    assert wait_for(lambda: _dropped(world, label) - start_dropped >= sent, 30), (
        _dropped(world, label) - start_dropped,
        sent,
    )
    elapsed = time.perf_counter() - t0
    time.sleep(0.05)

    # Every one counted, exactly, in memory and in Redis; nothing ran, nothing was learned.
    assert _dropped(world, label) - start_dropped == sent, _reasons(world)
    assert rt.stats["commands"] == start_commands, "a fuzzed message led to an action"
    assert store.learned_table(world.swarm.coordinator.session_id) == learned_before
    if label == "cmd":
        refused = world.client.hgetall(world.keys.target_counters(RT_NAME))
        counted = sum(int(v) for k, v in refused.items() if k.startswith(b"refused_"))
        assert counted >= sent  # earlier channels add none here; earlier runs of cmd do
    else:
        redis_count = int(world.client.hget(world.keys.bus_errors, channel) or 0) - start_redis
        stale = sum(c.sub.dropped[(channel, "stale")] for c in s.cores.values() if c.sub)
        assert redis_count - (stale - stale_before) == sent * spec.subscribers
    # Nobody crashed: threads alive, same subscriptions, no loop restarts, no runtime errors.
    assert world.swarm.dead_threads() == []
    assert _subscriptions(world) == subs_before
    assert not [r for r in caplog.records if "loop failed" in r.getMessage()]
    assert rt.stats["internal_errors"] == 0 and rt.stats["disconnects"] == 0
    _still_works(world, label)
    FIGURES[label] = {"sent": sent, "seconds": round(elapsed, 1), **reasons}
    print(f"FUZZ {label}: {sent} hostile messages in {elapsed:.1f}s, all dropped: {dict(reasons)}")


def _still_works(world: World, label: str) -> None:
    """Send one valid message of the channel's kind; the subscriber must act on it."""
    s, keys, c = world.swarm, world.keys, world.client
    key = s.secret
    now = time.time()
    if label == "samples":
        seen = s.benchmarker.samples_seen
        sample = MemorySample(target="ok", pid=1, seq=1, rss_bytes=1, target_bytes=1 << 30)
        c.publish(keys.samples, wire(sample, key))
        assert wait_for(lambda: s.benchmarker.samples_seen > seen, 5)
    elif label == "events":
        seen = s.coordinator.events_seen
        event = PressureEvent(
            target="ok",
            level=Level.BALANCED,
            previous=Level.CONSERVATIVE,
            rss_bytes=800,
            target_bytes=1000,
            sample_ts=now,
        )
        c.publish(keys.events, wire(event, key))
        assert wait_for(lambda: s.coordinator.events_seen > seen, 5)
    elif label == "acks":
        sub = s.coordinator.sub
        assert sub is not None
        got = sub.received
        ack = Ack(command_id="c", decision_id="d", target="ok", ok=True)
        c.publish(keys.acks, wire(ack, key))
        assert wait_for(lambda: sub.received > got, 5)
    elif label == "control":
        sid, _ = SessionStore(c, keys).ensure(None, {"source": "fuzz"})
        c.publish(keys.control, wire(Control(op="restore", session_id=sid), key))
        assert wait_for(lambda: s.coordinator.session_id == sid, 5)
    elif label in ("decisions", "cmd"):
        rt = s.runtimes[0]
        done = rt.stats["commands"]
        actions = (Action(kind=ActionKind.EVICT_CACHES, fraction=0.0),)  # the widget optimizer's
        if label == "decisions":
            decision = Decision(
                session_id="s",
                target=RT_NAME,
                level=Level.BALANCED,
                actions=actions,
                event_ts=now,
                sample_ts=now,
            )
            c.publish(keys.decisions("widget_optimizer"), wire(decision, key))
        else:
            cmd = sign(Command(decision_id="d", target=RT_NAME, actions=actions), s.secret)
            c.publish(keys.cmd(RT_NAME), cmd.model_dump_json())
        assert wait_for(lambda: rt.stats["commands"] > done, 5)


def test_whole_loop_still_runs_after_the_fuzzing(world: World) -> None:
    """A sample over the target goes sample -> event -> decision -> command -> ack."""
    s, keys, c = world.swarm, world.keys, world.client
    rt = s.runtimes[0]
    acks = int(c.hget(keys.counters, "acks") or 0)
    done = rt.stats["commands"]
    sample = MemorySample(target=RT_NAME, pid=1, seq=1, rss_bytes=2 << 30, target_bytes=1 << 30)
    c.publish(keys.samples, wire(sample, s.secret))
    assert wait_for(lambda: rt.stats["commands"] > done, 10)
    assert wait_for(lambda: int(c.hget(keys.counters, "acks") or 0) > acks, 10)
    assert s.dead_threads() == []
    if FIGURES:
        total = sum(f["sent"] for f in FIGURES.values())
        print(f"FUZZ total: {total} hostile messages over {len(FIGURES)} channels")


# --- parse_message alone (pure) --------------------------------------------


@settings(max_examples=3000, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500),
        st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
        payloads(MODELS),
    )
)
def test_parse_message_raises_only_message_error(raw: bytes | str) -> None:
    try:
        msg = parse_message(raw)
    except MessageError as exc:
        assert exc.reason in {"too_large", "invalid", "version", "unknown_kind"}
    else:
        assert isinstance(msg, MODELS)
        # A message that parses survives a round trip unchanged.
        assert parse_message(msg.model_dump_json()) == msg


@settings(max_examples=300, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(MODELS).flatmap(valid_message))
def test_valid_shapes_round_trip(raw: bytes) -> None:
    msg = parse_message(raw)
    assert parse_message(msg.model_dump_json().encode()) == msg
