"""The guard inside a target: cost meter, light command path, app settings, fork, secret.

Real embedded redis-server where a connection is involved; no Ray.
"""

from __future__ import annotations

import gc
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
import redis

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import (
    Ack,
    Action,
    ActionKind,
    Command,
    GuardCost,
    MemorySample,
    PressureEvent,
    parse_message,
)
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.seal import unseal
from hivemind.swarm.secret import read_secret
from hivemind.swarm.signing import sign
from hivemind.swarm.target.controller import CTL_T0_SETTING, Controller, ControllerConfig
from hivemind.swarm.target.cost import CostMeter, EffectTracker
from hivemind.swarm.target.envelope import CommandVerifier, hmac_sha256_hex
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cost_meter_times_collections_and_tells_ours_apart() -> None:
    meter = CostMeter().start()
    try:
        meter.tick()
        junk = [_Cycle() for _ in range(20_000)]
        del junk
        gc.collect()
        meter.ours(True)
        gc.collect()
        meter.ours(False)
        snap = meter.tick()
        assert snap.collections >= 2
        assert snap.collected >= 20_000
        assert snap.pause_p99_ms >= snap.pause_p50_ms > 0
        assert meter.ours_s > 0 and meter.total_s > meter.ours_s
        assert snap.guard_gc_ms_per_s > 0
        assert set(snap.as_wire()) == {
            "gc_ms_per_s",
            "pause_p50_ms",
            "pause_p99_ms",
            "guard_cpu_pct",
        }
        effects = EffectTracker(meter, window_s=0.0)
        effects.observe(time.monotonic())
        effects.begin("collect", 123, 1.0, time.monotonic(), tag="t")
        assert effects.pending_tag == "t"
        done = effects.poll(time.monotonic())
        assert done is not None and done.bytes_freed == 123 and done.gc_ms_per_s_after >= 0
    finally:
        meter.stop()
    assert meter._callback not in gc.callbacks


def test_guard_cpu_counts_what_its_helpers_used_in_the_window() -> None:
    meter = CostMeter()
    meter.tick(2.0)  # the helper had used 2 s before this window: not this window's
    time.sleep(0.1)
    busy = meter.tick(2.05)  # 50 ms of its CPU in ~100 ms
    assert 30.0 <= busy.guard_cpu_pct <= 60.0, busy.guard_cpu_pct
    time.sleep(0.1)
    gone = meter.tick(0.0)  # the helper is gone: its total fell, nothing counts
    assert gone.guard_cpu_pct < 30.0, gone.guard_cpu_pct


def test_wire_fields_round_trip() -> None:
    cost = GuardCost(controller="infeasible", live_over_bytes=5 * MB, gc_ms_per_s=1.5)
    s = MemorySample(target="t", pid=1, seq=1, rss_bytes=1, target_bytes=2, cost=cost)
    back = parse_message(s.model_dump_json())
    assert isinstance(back, MemorySample) and back.cost == cost
    old = parse_message(json.dumps({"v": 1, "ts": 1.0, "kind": "sample", "target": "t", "pid": 1,
                                    "seq": 1, "rss_bytes": 1, "target_bytes": 2}))  # fmt: skip
    assert isinstance(old, MemorySample) and old.cost is None, "samples without cost still parse"
    ev = PressureEvent(target="t", level="emergency", previous="balanced", rss_bytes=1,
                       target_bytes=2, sample_ts=1.0, cost=cost)  # fmt: skip
    assert parse_message(ev.model_dump_json()) == ev
    ack = Ack(command_id="c", decision_id="d", target="t", ok=True, phase="effect",
              gc_ms_per_s_after=2.0)  # fmt: skip
    assert parse_message(ack.model_dump_json()) == ack


def _cmd(target: str = "t", **kw: object) -> Command:
    return Command(
        decision_id="d", target=target, actions=(Action(kind=ActionKind.COLLECT, generation=0),),
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_envelope_accepts_what_the_sender_signs_and_refuses_the_rest() -> None:
    key = os.urandom(32)
    assert hmac_sha256_hex(key, b"abc") == hmac.new(key, b"abc", sha256).hexdigest()
    long_key = os.urandom(100)
    assert hmac_sha256_hex(long_key, b"x") == hmac.new(long_key, b"x", sha256).hexdigest()
    v = CommandVerifier(key, "t")
    good = sign(_cmd(), key)
    reason, cmd = v.check(good.model_dump_json().encode())
    assert reason is None and cmd is not None and cmd["id"] == good.id
    assert cmd["actions"] == [{"kind": "collect", "profile": None, "generation": 0,
                               "fraction": None, "name": None}]  # fmt: skip
    assert v.check(good.model_dump_json().encode()) == ("replayed", None)
    cases = {
        "unsigned": _cmd().model_dump_json().encode(),
        "bad_signature": sign(_cmd(), b"k" * 32).model_dump_json().encode(),
        "wrong_target": sign(_cmd("other"), key).model_dump_json().encode(),
        "stale": sign(_cmd(ts=time.time() - 120), key).model_dump_json().encode(),
        "too_large": b"x" * (64 * 1024 + 1),
    }
    tampered = json.loads(sign(_cmd(), key).model_dump_json())
    tampered["actions"] = [{"kind": "emergency"}]
    cases["bad_signature "] = json.dumps(tampered).encode()
    for want, raw in cases.items():
        assert v.check(raw)[0] == want.strip(), want
    assert CommandVerifier(None, "t").check(good.model_dump_json().encode())[0] == "bad_signature"


def test_a_command_loads_no_pydantic_and_keeps_the_guard_small(tmp_path: Path) -> None:
    """In a fresh interpreter: attach, apply a signed command, check modules and RSS."""
    code = r"""
import json, sys, time
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig
rt = Runtime(RuntimeConfig(name="t", target_mb=1e5, redis_url=None, namespace=None,
                           state_dir=None, key=bytes.fromhex(sys.argv[1])))
before = rss()
rt._on_command(sys.argv[2].encode())
print(json.dumps({"pydantic": "pydantic" in sys.modules, "hashlib": "_hashlib" in sys.modules,
                  "commands": rt.stats["commands"], "added_mb": rss() - before,
                  "outbox": len(rt._outbox)}))
"""
    key = os.urandom(32)
    raw = sign(_cmd(), key).model_dump_json()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code, key.hex(), raw], env=env, capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["commands"] == 1 and got["outbox"] == 1
    assert not got["pydantic"] and not got["hashlib"]
    assert got["added_mb"] < 2.0, got


@pytest.fixture
def rt(embedded: EmbeddedRedis, namespace: str) -> Iterator[Runtime]:
    runtime = Runtime(
        RuntimeConfig(
            name="guard-test", target_mb=100_000, redis_url=embedded.url, namespace=namespace,
            state_dir=embedded.state_dir, key=read_secret(embedded.state_dir),
        )
    )  # fmt: skip
    saved = (gc.get_threshold(), gc.isenabled())
    runtime.start()
    assert wait_for(lambda: runtime.connected, 5)
    try:
        yield runtime
    finally:
        runtime.stop()
        gc.set_threshold(*saved[0])
        (gc.enable if saved[1] else gc.disable)()


def test_oversized_commands_are_dropped_unbuffered_and_the_next_one_runs(
    rt: Runtime, client: redis.Redis, keys: Keys
) -> None:
    key = read_secret(rt.config.state_dir)  # type: ignore[arg-type]
    acks = client.pubsub(ignore_subscribe_messages=True)
    acks.subscribe(keys.acks)
    big = b'{"kind":"command","pad":"' + b"x" * (2 * MB) + b'"}'
    for _ in range(3):
        assert client.publish(keys.cmd("guard-test"), big) == 1
    good = sign(_cmd("guard-test"), key)
    client.publish(keys.cmd("guard-test"), good.model_dump_json())
    assert wait_for(lambda: rt.stats["commands"] == 1, 5), rt.stats
    assert rt.stats["refused_too_large"] == 3
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        m = acks.get_message(timeout=0.2)
        if m is not None:
            got = parse_message(unseal(m["data"], key))  # acks are sealed
    assert isinstance(got, Ack) and got.command_id == good.id and got.phase == "applied"
    assert wait_for(lambda: rt.stats["effects"] == 1, 5), "the effect ack follows"
    acks.close()


def test_status_hash_carries_cost_fields(rt: Runtime, client: redis.Redis, keys: Keys) -> None:
    assert wait_for(lambda: client.hget(keys.target("guard-test"), "controller") is not None, 5)
    t = {k.decode(): v.decode() for k, v in client.hgetall(keys.target("guard-test")).items()}
    assert t["controller"] == "idle"
    for f in ("gc_ms_per_s", "pause_p99_ms", "guard_cpu_pct", "live_over_bytes"):
        float(t[f])


def test_app_that_disabled_its_collector_gets_it_back_disabled(rt: Runtime) -> None:
    # Make every collection count as finding garbage that paced collections cannot keep
    # up with, so the controller takes gen-0 over: what is under test is the way back.
    rt.controller = Controller(
        ControllerConfig(
            relax_dwell_s=0.1, infeasible_after=10**6, presume_cost_s=1e9,
            futile_min_bytes=0, futile_fraction=0.0, regrow_fraction=0.0, regrow_min_bytes=0,
            useful_budget=1e-3,
        )
    )  # fmt: skip
    gc.disable()
    gc.set_threshold(12345, 17, 17)
    rss = current_rss_bytes()
    rt.target_bytes = int(rss / 1.05)  # over the target: the controller takes gen-0 over
    ballast = []  # ... as RSS keeps growing past what the last collection left
    deadline = time.monotonic() + 5
    while not rt.controller.engaged and time.monotonic() < deadline:
        chunk = bytearray(1 << 20)
        chunk[::4096] = b"x" * len(chunk[::4096])
        ballast.append(chunk)
        time.sleep(0.02)
    assert rt.controller.engaged, rt.controller.state()
    assert gc.isenabled(), "guarded: our thresholds, collector on"
    assert gc.get_threshold()[0] <= rt.controller.config.start_t0_disabled
    ballast.clear()
    rt.target_bytes = rss * 10  # pressure ends
    assert wait_for(lambda: not rt.controller.engaged, 10)
    assert not gc.isenabled()
    assert gc.get_threshold() == (12345, 17, 17)


def test_learned_setting_is_restored_with_the_session(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str, keys: Keys
) -> None:
    """What held a target cheapest, recorded by the coordinator, comes back on --session-id."""
    from hivemind.coordinator.coordinator import CoordinatorCore
    from hivemind.swarm.agent.base import AgentConfig

    cfg = AgentConfig(namespace=namespace, redis_url=embedded.url, session_id="learn-1")
    first = CoordinatorCore(cfg, f"{namespace}.coordinator")
    try:
        cost = GuardCost(controller="engaged", held_t0=2222, threshold0=2222)
        first.handle_event(PressureEvent(target="app", level="balanced", previous="conservative",
                                         rss_bytes=80 * MB, target_bytes=100 * MB,
                                         sample_ts=time.time(), cost=cost))  # fmt: skip
        kinds = [e.kind for e in first.store.events("learn-1")]
        assert "cost" in kinds
    finally:
        first.stop()
    client.hset(keys.swarm, "session_id", "another")  # a later swarm ran another session
    second = CoordinatorCore(cfg, f"{namespace}.coordinator")  # swarm up --session-id learn-1
    try:
        assert client.hget(keys.swarm, "session_id") == b"learn-1"
        runtime = Runtime(
            RuntimeConfig(name="app", target_mb=100_000, redis_url=embedded.url,
                          namespace=namespace, state_dir=embedded.state_dir, key=None)
        ).start()  # fmt: skip
        try:
            assert wait_for(lambda: runtime.controller.learned_t0 == 2222, 5)
        finally:
            runtime.stop()
        assert f"setting.{CTL_T0_SETTING}app" in {
            k.decode() for k in client.hgetall(keys.session("learn-1"))
        }
    finally:
        second.stop()


def test_infeasible_is_recorded_in_the_session_and_gets_only_what_drops_live_data(
    embedded: EmbeddedRedis, namespace: str
) -> None:
    from hivemind.coordinator.coordinator import CoordinatorCore
    from hivemind.swarm.agent.base import AgentConfig

    core = CoordinatorCore(AgentConfig(namespace=namespace, redis_url=embedded.url),
                           f"{namespace}.coordinator")  # fmt: skip
    try:
        cost = GuardCost(controller="infeasible", live_over_bytes=300 * MB)
        ev = PressureEvent(target="mypy", level="emergency", previous="aggressive",
                           rss_bytes=420 * MB, target_bytes=120 * MB, sample_ts=time.time(),
                           cost=cost)  # fmt: skip
        decision = core.handle_event(ev)
        # No collection or profile (the target's own controller found nothing to collect);
        # only what can drop live data: its caches and pools.
        assert decision is not None
        assert {a.kind.value for a in decision.actions} <= {"evict_caches", "trim_pools"}
        events = core.store.events(core.session_id)
        inf = [e for e in events if e.kind == "infeasible"]
        assert len(inf) == 1 and inf[0].payload["message"] == "infeasible: live ~300 MB over target"
        back = ev.model_copy(update={"cost": GuardCost(controller="engaged"), "rss_bytes": 90 * MB})
        core.handle_event(back)
        assert [e.kind for e in core.store.events(core.session_id)].count("feasible") == 1
    finally:
        core.stop()


def test_a_target_back_under_its_target_is_answered_at_once_when_it_crosses_again(
    embedded: EmbeddedRedis, namespace: str
) -> None:
    """Its way down sends nothing (its own controller collects), but the coordinator
    remembers it: the next crossing is a move up, decided at once, not "still
    emergency" held back by a cooldown (that cost the swarm round trip a 200 ms tail)."""
    from hivemind.coordinator.coordinator import CoordinatorCore
    from hivemind.swarm.agent.base import AgentConfig

    core = CoordinatorCore(AgentConfig(namespace=namespace, redis_url=embedded.url),
                           f"{namespace}.coordinator")  # fmt: skip
    try:
        cost = GuardCost(controller="engaged")

        def event(level: str, previous: str, rss_mb: int) -> PressureEvent:
            return PressureEvent(target="toggler", level=level, previous=previous,
                                 rss_bytes=rss_mb * MB, target_bytes=64 * MB,
                                 sample_ts=time.time(), reclaim_actions=("drop",),
                                 cost=cost)  # fmt: skip

        for _ in range(3):  # well within the emergency cooldown (0.2 s) each time
            up = core.handle_event(event("emergency", "conservative", 68))
            assert up is not None and up.reason == "conservative -> emergency"
            assert core.handle_event(event("conservative", "emergency", 20)) is None
    finally:
        core.stop()


FORK_APP = r"""
import os, sys, time
import hivemind
rt = hivemind.attach(target_mb=100000, name="prefork", redis_url=sys.argv[1],
                     namespace=sys.argv[2], state_dir=sys.argv[3])
print("secret" if "HIVEMIND_SECRET" in os.environ else "no-secret", flush=True)
while not rt.connected:
    time.sleep(0.05)
pid = os.fork()
if pid == 0:
    time.sleep(2.0)
    os._exit(0)
print(pid, flush=True)
os.waitpid(pid, 0)
"""


def test_forked_worker_guards_itself_under_its_own_name_and_the_secret_is_gone(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str, keys: Keys
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(ROOT)
    env["HIVEMIND_SECRET"] = "s" * 64
    p = subprocess.Popen(
        [sys.executable, "-c", FORK_APP, embedded.url, namespace, str(embedded.state_dir)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "no-secret"
        child = int(p.stdout.readline())
        assert wait_for(lambda: client.exists(keys.target(f"prefork-{child}")), 5)
        t = client.hgetall(keys.target(f"prefork-{child}"))
        assert int(t[b"pid"]) == child
        assert int(client.hget(keys.target("prefork"), "pid") or 0) == p.pid
    finally:
        p.wait(timeout=20)


def test_status_line_per_target() -> None:
    from hivemind.swarm.observe.status import _guard_line

    assert _guard_line({}) == ""
    fields = {"controller": "infeasible", "live_over_bytes": str(300 * MB), "gc_ms_per_s": "1.5"}
    line = _guard_line({**fields, "pause_p99_ms": "x", "guard_collections": "2"})
    assert line.startswith("infeasible: live ~300 MB over target")
    assert "gc 1.5 ms/s" in line and "2 collections" in line
    assert "t0=500" in _guard_line({"controller": "engaged", "threshold0": "500"})
