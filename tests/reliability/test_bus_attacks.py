"""Attacks on the bus (issue 14, items 1 and 3), each performed against the real embedded
Redis and the real agent cores and runtime, and each shown to fail.

- forged decisions (``emergency``, ``reclaim:<name>``, the removed ``freeze``),
  unsealed, sealed with another key, replayed, on every decisions channel;
  forged events and samples that would lead to one: nothing runs;
- a correctly authenticated decision naming a reclaim action the target
  never advertised: refused by the target, acked ``ok=False``;
- forged acks carrying a sniffed ``decision_id``: the learned table (what
  ``session restore`` brings back) is unchanged; a replayed genuine ack
  counts once;
- an ack with ``bytes_freed=10**25``, and ``inf``/``nan``/``±1e308``
  timestamps: dropped, and the coordinator keeps processing with the same
  loop (no restart);
- 10,000 forged target names: no state grows; and even authenticated ones
  are capped (``max_targets``) and pruned.

Each test records what it tried and how much was refused
(:func:`tests.reliability.attacks.record`) before it asserts, so
``benchmarks/bench_security.py`` tabulates these attacks too.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import (
    Ack,
    Action,
    ActionKind,
    ActionResult,
    Decision,
    Level,
    MemorySample,
    PressureEvent,
)
from hivemind.swarm.redis.bus import peek_message, wire
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.seal import seal
from hivemind.swarm.secret import read_secret
from hivemind.swarm.target.runtime import Runtime
from tests.conftest import wait_for
from tests.reliability.attacks import record
from tests.reliability.inproc import InProcessSwarm

RT = "victim"
OTHER_KEY = b"x" * 32


@dataclass
class World:
    server: EmbeddedRedis
    swarm: InProcessSwarm
    client: redis.Redis
    rt: Runtime
    ran: list[str] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return self.swarm.keys

    @property
    def key(self) -> bytes:
        return self.swarm.secret

    def learned(self) -> dict[str, object]:
        store = SessionStore(self.client, self.keys)
        table = store.learned_table(self.swarm.coordinator.session_id)
        return {k: e.model_dump() for k, e in table.items()}

    def executed(self) -> int:
        """Commands the victim carried out, plus reclaim actions that ran."""
        return int(self.rt.stats["commands"]) + len(self.ran)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("attacks") / ".hivemind"
    server = EmbeddedRedis(state)
    server.start()
    swarm = InProcessSwarm(
        url=server.url,
        namespace=f"at{uuid.uuid4().hex[:8]}",
        secret=read_secret(state),
        state_dir=state,
    )
    client = connect(server.url)
    try:
        swarm.start()
        rt = swarm.add_runtime(RT, target_mb=100_000)  # its own samples never cross a level
        w = World(server, swarm, client, rt)
        rt.register_reclaim("probe", lambda: w.ran.append("probe") or None)
        assert wait_for(swarm.subscribed, 10)
        yield w
    finally:
        swarm.stop()
        client.close()
        server.stop()


FINDINGS = {  # issue 14's items
    "forged_decision": ("1 forged decisions", "forged, tampered, stale decisions on every channel"),
    "replayed_decision": ("1 forged decisions", "a genuine decision replayed 10 times"),
    "forged_event_or_sample": ("1 forged decisions", "forged pressure events and samples"),
    "unadvertised_reclaim": ("1 forged decisions", "authentic decision, unadvertised reclaim"),
    "forged_ack": ("3 forged acks/events", "forged acks with a sniffed decision_id"),
    "replayed_ack": ("3 forged acks/events", "a genuine ack replayed 4 times"),
    "overflow_or_infinite_ack": ("3 forged acks/events", "bytes_freed 10**25, inf/nan/1e308 ts"),
    "forged_target_names": ("3 forged acks/events", "10,000 forged target names"),
}


def _record(attack: str, tried: int, executed: int) -> None:
    """Record (for the security benchmark) before asserting: ``executed`` got through."""
    finding, what = FINDINGS[attack]
    record(finding, what, tried=tried, refused=tried - executed)
    print(f"ATTACK {attack}: {tried} tried, {executed} executed")


def _decision(actions: tuple[Action, ...], target: str = RT, **kw: object) -> Decision:
    now = time.time()
    return Decision(
        session_id="attacker",
        target=target,
        level=Level.EMERGENCY,
        actions=actions,
        event_ts=now,
        sample_ts=now,
        **kw,  # type: ignore[arg-type]
    )


EMERGENCY = (Action(kind=ActionKind.EMERGENCY),)
RECLAIM = (Action(kind=ActionKind.RECLAIM, name="probe"),)


def _quiet(w: World, seconds: float = 0.3) -> None:
    """Let everything in flight arrive."""
    time.sleep(seconds)


def test_forged_decisions_execute_nothing(world: World) -> None:
    w = world
    before = w.executed()
    channels = [
        w.keys.decisions("widget_optimizer"),
        w.keys.decisions("gc_optimizer"),
        f"hm:{w.keys.ns}:decisions",  # the old shared channel: nobody listens any more
    ]
    raws: list[bytes] = []
    for actions in (EMERGENCY, RECLAIM, (Action(kind=ActionKind.COLLECT, generation=2),)):
        d = _decision(actions)
        raws.append(d.model_dump_json().encode())  # unsealed, as before the fix
        raws.append(wire(d, OTHER_KEY))  # sealed with a key that is not the swarm's
        tampered = wire(d, w.key).replace(b'"level":"emergency"', b'"level":"aggressive"')
        raws.append(tampered)  # a genuine seal around a changed body
        old = d.model_copy(update={"ts": time.time() - 3600})
        raws.append(wire(old, w.key))  # genuine but stale (a replay from an hour ago)
    freeze = json.loads(_decision(EMERGENCY).model_dump_json())
    freeze["actions"] = [{"kind": "freeze"}]  # no longer an action at all
    raws.append(json.dumps(freeze).encode())
    raws.append(seal(json.dumps(freeze), w.key))
    tried = 0
    for ch in channels:
        for raw in raws:
            w.client.publish(ch, raw)
            tried += 1
    _quiet(w)
    executed = w.executed() - before
    _record("forged_decision", tried, executed)
    assert executed == 0
    opt = w.swarm.cores["widget_optimizer"]
    assert opt.sub is not None and opt.sub.reasons["bad_signature"] >= 2


def test_replayed_decision_runs_once(world: World) -> None:
    """A genuine decision captured on the wire and published again: one command, not two."""
    w = world
    before = w.executed()
    genuine = wire(_decision(RECLAIM), w.key)
    for _ in range(11):
        w.client.publish(w.keys.decisions("widget_optimizer"), genuine)
    assert wait_for(lambda: w.ran.count("probe") >= 1, 5)
    _quiet(w)
    executed = w.executed() - before
    _record("replayed_decision", 10, executed - 2)  # one command + one reclaim are genuine
    assert executed == 2
    assert w.swarm.cores["widget_optimizer"].rejected["replayed"] >= 10  # type: ignore[attr-defined]


def test_forged_events_and_samples_lead_to_nothing(world: World) -> None:
    w = world
    before = w.executed()
    decided = w.swarm.coordinator.events_seen
    now = time.time()
    event = PressureEvent(
        target=RT,
        level=Level.EMERGENCY,
        previous=Level.CONSERVATIVE,
        rss_bytes=2 << 30,
        target_bytes=1 << 30,
        sample_ts=now,
        reclaim_actions=("probe",),
    )
    sample = MemorySample(
        target=RT, pid=1, seq=1, rss_bytes=2 << 30, target_bytes=1 << 30, reclaim_actions=("probe",)
    )
    tried = 0
    for msg, ch in ((event, w.keys.events), (sample, w.keys.samples)):
        for raw in (msg.model_dump_json().encode(), wire(msg, OTHER_KEY)):
            for _ in range(10):
                w.client.publish(ch, raw)
                tried += 1
    _quiet(w, 0.5)
    executed = w.executed() - before
    _record("forged_event_or_sample", tried, executed)
    assert executed == 0
    assert w.swarm.coordinator.events_seen == decided


def test_reclaim_name_the_target_never_advertised_is_refused(world: World) -> None:
    """Even a correctly authenticated decision cannot name a reclaim action the target lacks."""
    w = world
    before = w.executed()
    refused = w.rt.stats["refused_unknown_reclaim"]
    opt = w.swarm.cores["widget_optimizer"]
    outcomes = opt.outcomes["refused"]  # type: ignore[attr-defined]
    d = _decision((Action(kind=ActionKind.RECLAIM, name="not-advertised"),))
    w.client.publish(w.keys.decisions("widget_optimizer"), wire(d, w.key))
    assert wait_for(lambda: w.rt.stats["refused_unknown_reclaim"] == refused + 1, 5)
    # ... and the optimizer hears why (Ack.error) and reports it.
    assert wait_for(lambda: opt.outcomes["refused"] == outcomes + 1, 5)  # type: ignore[attr-defined]
    _record("unadvertised_reclaim", 1, w.executed() - before)
    assert w.executed() == before


def _pending_decision(w: World, target: str) -> Decision:
    """Make the coordinator decide for ``target`` (no runtime answers) and sniff the decision."""
    ps = w.client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(w.keys.decisions("widget_optimizer"), w.keys.decisions("gc_optimizer"))
    ps.get_message(timeout=0.2)
    event = PressureEvent(
        target=target,
        level=Level.AGGRESSIVE,
        previous=Level.CONSERVATIVE,
        rss_bytes=950 << 20,
        target_bytes=1000 << 20,
        sample_ts=time.time(),
    )
    w.client.publish(w.keys.events, wire(event, w.key))  # as the benchmarker would
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.2)
            if msg is not None:
                d = peek_message(msg["data"])  # an eavesdropper can read it
                if isinstance(d, Decision) and d.target == target:
                    return d
    finally:
        ps.close()
    raise AssertionError("no decision to sniff")


def _ack(d: Decision, freed: int, **kw: object) -> Ack:
    results = tuple(
        ActionResult(kind=a.kind, bytes_freed=freed, duration_ms=0.1) for a in d.actions
    )
    fields: dict[str, object] = {"ok": True, "bytes_freed": freed, "results": results, **kw}
    return Ack(command_id="forged", decision_id=d.id, target=d.target, **fields)  # type: ignore[arg-type]


def test_forged_acks_cannot_poison_the_learned_table(world: World) -> None:
    w = world
    d = _pending_decision(w, "sniffed")
    assert wait_for(lambda: d.id in w.swarm.coordinator.pending, 2)
    learned = w.learned()
    tried = 0
    for freed in (1 << 40, -(1 << 40)):
        forged = _ack(d, freed)
        for raw in (forged.model_dump_json().encode(), wire(forged, OTHER_KEY)):
            w.client.publish(w.keys.acks, raw)
            tried += 1
    # A sealed refusal (ok=False with error) teaches nothing either.
    w.client.publish(w.keys.acks, wire(_ack(d, 1 << 40, ok=False, error="stale"), w.key))
    tried += 1
    _quiet(w)
    changed = int(w.learned() != learned)
    _record("forged_ack", tried, changed)
    assert w.learned() == learned
    assert d.id in w.swarm.coordinator.pending, "a forged ack must not consume the decision"
    # The genuine ack (sealed by the target) counts once; its replays do not.
    genuine = wire(_ack(d, 1 << 20), w.key)
    for _ in range(5):
        w.client.publish(w.keys.acks, genuine)
    assert wait_for(lambda: d.id not in w.swarm.coordinator.pending, 5)
    _quiet(w)
    table = SessionStore(w.client, w.keys).learned_table(w.swarm.coordinator.session_id)
    mine = {k: e for k, e in table.items() if k.startswith("sniffed|")}
    _record("replayed_ack", 4, sum(e.n for e in mine.values()) - len(mine))
    assert mine and all(e.n == 1 for e in mine.values()), mine


def _coordinator_alive(w: World) -> None:
    """The coordinator still processes events, on the same subscription (no loop restart)."""
    c = w.swarm.coordinator
    seen = c.events_seen
    event = PressureEvent(
        target="alive",
        level=Level.BALANCED,
        previous=Level.CONSERVATIVE,
        rss_bytes=800,
        target_bytes=1000,
        sample_ts=time.time(),
    )
    w.client.publish(w.keys.events, wire(event, w.key))
    assert wait_for(lambda: c.events_seen > seen, 5)
    assert w.swarm.dead_threads() == []


def test_huge_bytes_freed_and_infinite_timestamps(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    c = w.swarm.coordinator
    sub = c.sub
    d = _pending_decision(w, "overflow")
    assert wait_for(lambda: d.id in c.pending, 2)
    base = json.loads(_ack(d, 1).model_dump_json())
    hostile = [
        {"bytes_freed": 10**25},
        {"bytes_freed": -(10**25)},
        {"results": [{"kind": "emergency", "bytes_freed": 10**25}]},
        {"applied_ts": 1e308, "sample_ts": -1e308},
        {"applied_ts": math.inf},
        {"sample_ts": -math.inf},
        {"ts": math.nan},
        {"duration_ms": math.inf},
        {"received_ts": 1e300},
    ]
    tried = 0
    for change in hostile:
        body = json.dumps({**base, **change}, allow_nan=True)
        for raw in (body.encode(), seal(body, w.key)):  # even behind a genuine seal
            w.client.publish(w.keys.acks, raw)
            tried += 1
    _quiet(w)
    _record("overflow_or_infinite_ack", tried, 0 if d.id in c.pending and c.sub is sub else 1)
    _coordinator_alive(w)
    assert c.sub is sub, "the coordinator's loop restarted"
    assert not [r for r in caplog.records if "loop failed" in r.getMessage()]
    assert d.id in c.pending
    latency = {k.decode(): v.decode() for k, v in w.client.hgetall(w.keys.latency).items()}
    assert all(math.isfinite(float(v)) for v in latency.values()), latency
    assert int(w.client.hget(w.keys.counters, "bytes_freed") or 0) < 2**50
    assert sub is not None and sub.reasons["invalid"] >= len(hostile)


def test_ten_thousand_forged_target_names_grow_nothing(world: World) -> None:
    w = world
    c, b = w.swarm.coordinator, w.swarm.benchmarker
    before = (len(c.histories), len(c.last_seen), len(b.targets))
    assert c.sub is not None and b.sub is not None
    c0, b0 = c.sub.reasons["unsigned"], b.sub.reasons["unsigned"]
    state_before = w.client.hlen(w.keys.coordinator_state)
    pipe = w.client.pipeline(transaction=False)
    now = time.time()
    for i in range(10_000):
        name = f"forged-{i}"
        ev = PressureEvent(
            target=name,
            level=Level.EMERGENCY,
            previous=Level.CONSERVATIVE,
            rss_bytes=2 << 30,
            target_bytes=1 << 30,
            sample_ts=now,
        )
        pipe.publish(w.keys.events, ev.model_dump_json())
        s = MemorySample(target=name, pid=1, seq=1, rss_bytes=2 << 30, target_bytes=1 << 30)
        pipe.publish(w.keys.samples, s.model_dump_json())
    pipe.execute()
    assert wait_for(lambda: c.sub is not None and c.sub.reasons["unsigned"] - c0 >= 10_000, 30)
    assert wait_for(lambda: b.sub is not None and b.sub.reasons["unsigned"] - b0 >= 10_000, 30)
    after = (len(c.histories), len(c.last_seen), len(b.targets))
    _record("forged_target_names", 20_000, after[1] - before[1] + after[2] - before[2])
    assert after == before
    assert w.client.hlen(w.keys.coordinator_state) == state_before
    _coordinator_alive(w)


def test_authenticated_target_names_are_capped_and_pruned(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a key holder sending endless names cannot grow the coordinator without bound."""
    w = world
    c = w.swarm.coordinator
    monkeypatch.setattr(c, "max_targets", 100)
    pipe = w.client.pipeline(transaction=False)
    now = time.time()
    n = 600
    for i in range(n):
        ev = PressureEvent(
            target=f"many-{i}",
            level=Level.CONSERVATIVE,  # no decision: only the target set could grow
            previous=Level.CONSERVATIVE,
            rss_bytes=1,
            target_bytes=1 << 30,
            sample_ts=now,
        )
        pipe.publish(w.keys.events, wire(ev, w.key))
    pipe.execute()
    assert wait_for(lambda: "many-599" in c.last_seen, 20)  # in order: all were handled
    assert len(c.last_seen) <= 100 and len(c.histories) <= 100
    monkeypatch.setattr(c, "forget_after_s", 0.0)
    assert wait_for(lambda: not any(t.startswith("many-") for t in c.last_seen), 5)
