"""The target runtime against a real embedded redis-server, without Ray.

Commands are signed here with the state folder's key, as the optimizer
agents sign them; forged ones must be refused and counted.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Ack, Action, ActionKind, Command, parse_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.seal import unseal
from hivemind.swarm.secret import read_secret
from hivemind.swarm.signing import sign
from hivemind.swarm.target.runtime import (
    CALM_GAP_S,
    CALM_WATCH_AFTER_S,
    CALM_WHOLE_S,
    FAST_CHECK_HZ,
    IMMINENT_CHECK_HZ,
    Runtime,
    RuntimeConfig,
)
from tests.conftest import offline_runtime, wait_for


@pytest.fixture
def runtime(embedded: EmbeddedRedis, namespace: str) -> Iterator[Runtime]:
    key = read_secret(embedded.state_dir)
    rt = Runtime(
        RuntimeConfig(
            name="rt-test",
            target_mb=100_000,
            redis_url=embedded.url,
            namespace=namespace,
            state_dir=embedded.state_dir,
            key=key,
        )
    ).start()
    thresholds = gc.get_threshold()
    assert wait_for(lambda: rt.connected, 5)
    try:
        yield rt
    finally:
        rt.stop()
        gc.set_threshold(*thresholds)


class _Acks:
    """Subscribed at construction (a generator would subscribe too late)."""

    def __init__(self, client: redis.Redis, keys: Keys, key: bytes) -> None:
        self.key = key
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.acks)

    def next(self, timeout_s: float = 3.0) -> Ack:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=0.2)
            if msg is not None:
                ack = parse_message(unseal(msg["data"], self.key))  # acks are sealed
                assert isinstance(ack, Ack)
                return ack
        raise AssertionError("no ack")


def _offline(tmp_path: Path, name: str) -> Runtime:
    """A runtime with a 100 MB target and no swarm, not started (its methods are driven
    by hand)."""
    return offline_runtime(tmp_path, name)


def test_samples_and_status_hash(runtime: Runtime, client: redis.Redis, keys: Keys) -> None:
    assert wait_for(lambda: client.exists(keys.target("rt-test")), 5)
    t = client.hgetall(keys.target("rt-test"))
    assert int(t[b"pid"]) == os.getpid()
    assert int(t[b"rss_bytes"]) > 0
    assert 0 < client.pttl(keys.target("rt-test")) <= 5000
    n = runtime.stats["samples"]
    time.sleep(1.2)
    assert runtime.stats["samples"] - n >= 1  # far under its target, calm: 1-10 Hz


def test_a_calm_guard_publishes_a_heartbeat_not_every_sample(
    runtime: Runtime, client: redis.Redis
) -> None:
    """Far under its target the guard samples at least once a second but publishes
    only news and a heartbeat a second, and the heartbeat reaches Redis."""
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(runtime._sample_channel)
    try:
        time.sleep(0.3)
        s0, p0 = runtime.stats["samples"], runtime.stats["published"]
        got = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            if sub.get_message(timeout=0.2) is not None:
                got += 1
        sampled = runtime.stats["samples"] - s0
        published = runtime.stats["published"] - p0
        assert sampled >= 2, "sampling goes on (calm: once a second, the watcher between)"
        assert got >= 1 and 1 <= published <= 6, (sampled, published, got)
    finally:
        sub.close()


def test_samples_say_which_caches_and_pools_the_target_holds(
    runtime: Runtime, client: redis.Redis, keys: Keys
) -> None:
    """A RenderCache created in the app is news: the next sample says ``caches``, so the
    coordinator may send it ``evict_caches`` (and never does to a target without one)."""
    from hivemind.agents.render_cache import RenderCache
    from hivemind.swarm.messages import MemorySample

    key = read_secret(runtime.config.state_dir)  # type: ignore[arg-type]
    sub = client.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(runtime._sample_channel)
    cache: RenderCache[str, str] | None = None
    try:
        seen: list[tuple[str, ...] | None] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = sub.get_message(timeout=0.2)
            if msg is None:
                continue
            sample = parse_message(unseal(msg["data"], key))
            assert isinstance(sample, MemorySample)
            seen.append(sample.holds)
            if cache is None:  # the app makes one after its guard's first sample
                cache = RenderCache(name="holds-test", max_size=4)
            elif "caches" in (sample.holds or ()):
                break
        assert cache is not None and "caches" in (seen[-1] or ()), seen
        assert all(h is not None for h in seen), "every sample says what it holds"
    finally:
        sub.close()
        del cache


def test_a_guard_under_pressure_publishes_at_the_benchmarkers_pace(
    embedded: EmbeddedRedis, namespace: str
) -> None:
    """At ~80 % of its target (level balanced, feasible) a sample goes out every 0.2 s
    (the benchmarker repeats a target's event at most that often), not all 20 a second."""
    thresholds = gc.get_threshold()
    gc.collect()  # else the guard's first collection may free enough to end the pressure
    rt = Runtime(
        RuntimeConfig(
            name="rt-busy",
            target_mb=current_rss_bytes() / 0.8 / 2**20,
            redis_url=embedded.url,
            namespace=namespace,
            state_dir=embedded.state_dir,
            key=read_secret(embedded.state_dir),
        )
    ).start()
    try:
        assert wait_for(lambda: rt.connected and rt.level != "conservative", 5)
        s0, p0 = rt.stats["samples"], rt.stats["published"]
        time.sleep(1.0)
        sampled, published = rt.stats["samples"] - s0, rt.stats["published"] - p0
        assert sampled >= 10
        assert 3 <= published <= sampled // 3, (sampled, published)
        assert rt.stats["calm_samples"] == 0, "under pressure every sample is whole"
    finally:
        rt.stop()
        gc.set_threshold(*thresholds)


def test_signed_command_runs_and_acks(runtime: Runtime, client: redis.Redis, keys: Keys) -> None:
    key = read_secret(runtime.config.state_dir)  # type: ignore[arg-type]
    calls = []
    runtime.register_reclaim("mine", lambda: calls.append(1) or None)
    acks = _Acks(client, keys, key)
    cmd = sign(
        Command(
            decision_id="d1",
            target="rt-test",
            sample_ts=time.time(),
            actions=(
                Action(kind=ActionKind.COLLECT, generation=0),
                Action(kind=ActionKind.RECLAIM, name="mine"),
            ),
        ),
        key,
    )
    time.sleep(0.1)
    assert client.publish(keys.cmd("rt-test"), cmd.model_dump_json()) == 1
    ack = acks.next()
    assert ack.command_id == cmd.id and ack.ok
    assert [r.kind for r in ack.results] == [ActionKind.COLLECT, ActionKind.RECLAIM]
    assert calls == [1]
    assert ack.applied_ts >= ack.received_ts >= cmd.ts


def test_a_command_to_a_calm_guard_is_followed_by_samples_at_the_full_rate(
    runtime: Runtime, client: redis.Redis, keys: Keys
) -> None:
    """Calm for a second, the guard samples once a second; a command makes the next
    sample whole and brings it at the full rate (50 ms), not a second later."""
    key = read_secret(runtime.config.state_dir)  # type: ignore[arg-type]
    acks = _Acks(client, keys, key)
    assert wait_for(lambda: runtime._calm_watched, 5)
    s0 = runtime.stats["samples"]
    assert wait_for(lambda: runtime.stats["samples"] > s0, 3, 0.005)  # the next is 1 s away
    s1 = runtime.stats["samples"]
    cmd = sign(
        Command(
            decision_id="d-calm", target="rt-test", sample_ts=time.time(),
            actions=(Action(kind=ActionKind.COLLECT, generation=0),),
        ),
        key,
    )  # fmt: skip
    assert client.publish(keys.cmd("rt-test"), cmd.model_dump_json()) == 1
    assert acks.next().ok
    assert wait_for(lambda: runtime.stats["samples"] > s1, 0.4, 0.005), "not a second later"


@pytest.mark.parametrize("attack", ["unsigned", "wrong_key", "tampered", "replayed", "stale"])
def test_forged_commands_are_refused_and_counted(
    attack: str, runtime: Runtime, client: redis.Redis, keys: Keys
) -> None:
    key = read_secret(runtime.config.state_dir)  # type: ignore[arg-type]
    ran = []
    runtime.register_reclaim("probe", lambda: ran.append(1) or None)
    probe = (Action(kind=ActionKind.RECLAIM, name="probe"),)
    good = sign(Command(decision_id="d", target="rt-test", actions=probe), key)
    acks = _Acks(client, keys, key)
    time.sleep(0.1)
    if attack == "unsigned":
        raws = [Command(decision_id="d", target="rt-test", actions=probe).model_dump_json()]
    elif attack == "wrong_key":
        raws = [
            sign(
                Command(decision_id="d", target="rt-test", actions=probe), b"k" * 64
            ).model_dump_json()
        ]
    elif attack == "tampered":
        data = json.loads(good.model_dump_json())
        data["actions"] = [{"kind": "emergency"}]
        raws = [json.dumps(data)]
    elif attack == "stale":
        raws = [
            sign(
                Command(decision_id="d", target="rt-test", actions=probe, ts=time.time() - 120), key
            ).model_dump_json()
        ]
    else:  # replayed: the first copy runs, the second must not
        raws = [good.model_dump_json(), good.model_dump_json()]
    for raw in raws:
        client.publish(keys.cmd("rt-test"), raw)
    expected_runs = 1 if attack == "replayed" else 0
    reason = {"wrong_key": "bad_signature", "tampered": "bad_signature"}.get(attack, attack)
    assert wait_for(lambda: runtime.stats[f"refused_{reason}"] == 1, 5), runtime.stats
    time.sleep(0.2)
    assert len(ran) == expected_runs
    assert int(client.hget(keys.counters, "refused") or 0) == 1
    assert int(client.hget(keys.target_counters("rt-test"), f"refused_{reason}") or 0) == 1
    assert int(client.hget(keys.target_counters("rt-test"), "refused") or 0) == 1
    # The refusal is acked (sealed) with its reason, so the sender learns why.
    # An authentic but refused command (stale, replayed) is acked with its reason, so the
    # sender learns why; a forged one (unsigned, bad signature) is counted, never answered.
    if reason in ("stale", "replayed"):
        refusals = [a for a in (acks.next() for _ in raws) if not a.ok]
        assert [(a.decision_id, a.error) for a in refusals] == [("d", reason)]
    else:
        with pytest.raises(AssertionError, match="no ack"):
            acks.next(timeout_s=0.5)


def test_unknown_reclaim_name_is_refused_with_an_ack(
    runtime: Runtime, client: redis.Redis, keys: Keys
) -> None:
    """A correctly signed command naming a reclaim action the target never advertised."""
    key = read_secret(runtime.config.state_dir)  # type: ignore[arg-type]
    ran: list[int] = []
    runtime.register_reclaim("mine", lambda: ran.append(1) or None)
    acks = _Acks(client, keys, key)
    time.sleep(0.1)
    actions = (
        Action(kind=ActionKind.RECLAIM, name="mine"),
        Action(kind=ActionKind.RECLAIM, name="rm-rf"),
    )
    cmd = sign(Command(decision_id="d2", target="rt-test", actions=actions), key)
    client.publish(keys.cmd("rt-test"), cmd.model_dump_json())
    ack = acks.next()
    assert (ack.ok, ack.error, ack.command_id) == (False, "unknown_reclaim", cmd.id)
    assert ack.results == ()
    assert ran == [], "nothing of a refused command runs"


def test_survives_redis_kill_and_reconnects(
    runtime: Runtime, embedded: EmbeddedRedis, keys: Keys
) -> None:
    pid = embedded.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not runtime.connected, 5)
    samples = runtime.stats["samples"]
    time.sleep(0.5)
    assert runtime.stats["samples"] > samples, "sampling goes on while Redis is away"
    assert runtime._thread is not None and runtime._thread.is_alive()
    embedded.start()
    t0 = time.monotonic()
    assert wait_for(lambda: runtime.connected, 5)
    assert time.monotonic() - t0 < 2.5
    c = connect(embedded.url)
    assert wait_for(lambda: c.exists(keys.target("rt-test")), 3)
    c.close()


def test_runtime_without_any_swarm_protects_locally_and_flags_infeasible(tmp_path: Path) -> None:
    """A 1 MB target cannot be met: a collection or two, then it says so and stops."""
    thresholds = gc.get_threshold()
    rt = offline_runtime(tmp_path / "none", "lonely", 1.0).start()
    try:
        assert wait_for(lambda: rt.stats["local_collections"] >= 1, 5)
        assert wait_for(lambda: rt.controller.infeasible, 5), "flagged within 5 s"
        assert rt.controller.live_over_bytes > 0
        assert gc.get_threshold() == thresholds, "the app's own settings are back"
        n, samples = rt.stats["local_collections"], rt.stats["samples"]
        time.sleep(1.5)
        assert rt.stats["local_collections"] == n, "no futile collections meanwhile"
        # nothing is due until RSS falls: 2 Hz, not 20 (30 samples in 1.5 s)
        assert rt.stats["samples"] - samples <= 6, rt.stats["samples"] - samples
        assert not rt.connected
    finally:
        rt.stop()
        gc.set_threshold(*thresholds)


def _calm_runtime(tmp_path: Path, target_mb: float) -> Runtime:
    """A started guard with no swarm."""
    return offline_runtime(tmp_path / "none", "calm", target_mb).start()


def test_a_calm_guard_only_reads_rss_between_whole_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far under its target with nothing under way and no watcher process (the user
    turned it off), a sample reads RSS and stops, at half the sampling rate; a whole
    one (controller, cost meter, status, heartbeat) runs about once a second; the
    app's own collections are watched for RSS reaching 70 %."""
    monkeypatch.setenv("HIVEMIND_WATCHER", "0")
    rt = _calm_runtime(tmp_path, 100_000)
    assert rt.watcher.failed, "HIVEMIND_WATCHER=0: never started"
    try:
        time.sleep(0.3)
        s0, c0 = rt.stats["samples"], rt.stats["calm_samples"]
        time.sleep(2.5)
        sampled, calm = rt.stats["samples"] - s0, rt.stats["calm_samples"] - c0
        assert 15 <= sampled <= 35, "RSS is read at ~10 Hz"
        assert 1 <= sampled - calm <= 5, (sampled, calm)
        assert rt.trigger.arm_bytes == int(0.7 * rt.target_bytes)
        assert rt.trigger.gap_s == CALM_GAP_S
        assert not rt.watcher.running
    finally:
        rt.stop()


def test_calm_for_a_second_the_watcher_reads_rss_and_wakes_the_guard_at_70(
    tmp_path: Path,
) -> None:
    """Calm for a second, the guard arms its watcher process at 70 % of the target and
    takes one whole sample a second; RSS jumping past the mark (no collection to see
    it: the collector is off) wakes it through the watcher within its period."""
    gc.collect()
    rt = _calm_runtime(tmp_path, current_rss_bytes() / 0.5 / 2**20)  # now at 50 %
    enabled = gc.isenabled()
    gc.disable()
    try:
        assert wait_for(lambda: rt._calm_watched, 3), "calm for a second: watched"
        level, period = rt.watcher._sent
        assert abs(level - 0.7 * rt.target_bytes) < 0.02 * rt.target_bytes, level
        assert period == 1 / rt.config.sample_hz
        s0, c0 = rt.stats["samples"], rt.stats["calm_samples"]
        time.sleep(2.2)
        sampled = rt.stats["samples"] - s0
        assert 1 <= sampled <= 4, ("once a second", sampled)
        assert rt.stats["calm_samples"] == c0, "each sample is whole"
        assert not rt.near
        drained = rt.trigger.drained
        ballast = bytearray(int(0.3 * rt.target_bytes))
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1  # RSS now ~80 % of the target
        t0 = time.monotonic()
        assert wait_for(lambda: rt.near, 2)
        assert time.monotonic() - t0 < 0.5, "seen within the watcher's period, not at 1 Hz"
        assert rt.trigger.drained > drained, "woken through the watcher's pipe"
        s1 = rt.stats["samples"]
        time.sleep(0.5)
        assert rt.stats["samples"] - s1 >= 5, "near the target: 20 Hz, not a second apart"
        del ballast
    finally:
        if enabled:
            gc.enable()
        rt.stop()
    assert not rt.watcher.running


def test_calm_ends_in_the_sample_that_sees_rss_rise_toward_the_target(tmp_path: Path) -> None:
    """The calm mark is 70 % of the target (where fast checks start); a reading over it,
    or growth that would take RSS over it within two samples, makes that sample whole.
    So does a whole sample being due, or anything under way."""
    rt = _offline(tmp_path, "calm-edge")
    mb = 2**20

    def calm_at(now: float, rss_mb: float) -> bool:
        """After a whole sample at 10.0 s that read 50 MB: is a sample at ``now`` calm?"""
        rt._settle_calm()
        rt._whole_at, rt._growth = 10.0, 0.0
        rt._last_read = (10.0, 50 * mb)
        return rt._calm(now, int(rss_mb * mb))

    assert calm_at(10.05, 50)
    assert rt._sample_period() == 2 / rt.config.sample_hz, "calm: half the rate"
    assert not calm_at(10.05, 71), "over 70 % of the target"
    assert not calm_at(10.05, 60), "200 MB/s: 70 % is within two calm samples"
    assert rt._sample_period() == 1 / rt.config.sample_hz
    assert calm_at(10.05, 51), "20 MB/s: not within two calm samples"
    assert not calm_at(11.0, 50), "a whole sample is due every second"
    rt.level = "balanced"
    assert not calm_at(10.05, 50), "a raised level is followed sample by sample"
    rt.level, rt._near = "conservative", True
    assert not calm_at(10.05, 50), "near the target"
    rt._near = False
    assert calm_at(10.05, 50)
    rt.target_bytes = 70 * mb  # after the whole sample: 50 MB is 71 % of the new target
    assert not rt._calm(10.10, 50 * mb), "a new target counts at once"
    rt.target_bytes = 100 * mb
    assert rt.freezer.freeze()
    try:
        assert not calm_at(10.05, 50), "a freeze is given back by a whole sample"
    finally:
        rt.freezer.thaw()
    assert calm_at(10.05, 50)


def test_the_watcher_reads_rss_once_the_guard_was_calm_for_a_second(tmp_path: Path) -> None:
    """While calm for CALM_WATCH_AFTER_S, the watcher is armed at 70 % of the target
    less two samples' growth; not before, not with RSS there already, not after a
    command (which makes the next sample whole). Meanwhile samples are whole and a
    second apart."""
    rt = _offline(tmp_path, "calm-watch")
    mb = 2**20
    rt._settle_calm()
    since = rt._calm_since
    rt._last_read, rt._growth = (since, 50 * mb), 0.0
    assert rt._calm_watch(since + 0.5) == 0, "not calm for a second yet"
    assert rt._calm_watch(since + CALM_WATCH_AFTER_S) == int(70 * mb)
    rt._growth = 100.0 * mb  # two 20 Hz samples' worth: 10 MB
    assert rt._calm_watch(since + 2) == int(60 * mb)
    rt._last_read = (since, 61 * mb)
    assert rt._calm_watch(since + 2) == 0, "there already: the guard reads RSS itself"
    rt._last_read, rt._growth = (since, 50 * mb), 0.0
    rt._settle_calm()
    assert rt._calm_since == since, "still calm: since then"
    rt._calm_ok = False  # a command arrived
    assert rt._calm_watch(since + 2) == 0
    rt.level = "balanced"
    rt._settle_calm()
    rt.level = "conservative"
    rt._settle_calm()
    assert rt._calm_since > since, "calm again: the second starts over"
    rt._pubsub = object()  # type: ignore[assignment]  # read through redis-py (TLS)
    assert rt._calm_watch(rt._calm_since + 2) == 0, "no wake pipe beside that wait"
    rt._pubsub = None
    assert rt._calm_watch(rt._calm_since + 2) > 0
    rt._calm_watched = True
    assert rt._sample_period() == CALM_WHOLE_S
    rt._whole_at = since
    assert not rt._calm(since + 0.5, 50 * mb), "watched: each sample is whole"


def test_reclaim_names_are_validated(runtime: Runtime) -> None:
    with pytest.raises(ValueError):
        runtime.register_reclaim("no spaces", lambda: None)


def test_fast_checks_start_early_when_rss_grows_fast(tmp_path: Path) -> None:
    """Under the 70 % mark, RSS growing fast enough to get there within two samples
    already switches the 200 Hz check on; flat RSS there does not."""
    rt = _offline(tmp_path, "near")
    mb = 2**20
    rt._update_near(10.0, 60 * mb)
    rt._update_near(10.05, 60 * mb)
    assert not rt._near, "flat at 60 %"
    rt._update_near(10.10, 65 * mb)  # 100 MB/s: 70 % is 50 ms away
    assert rt._near
    rt._update_near(12.0, 65 * mb)  # the growth fades away
    rt._update_near(12.05, 65 * mb)
    assert not rt._near
    rt._update_near(12.10, 71 * mb)
    assert rt._near, "at 70 % whatever the growth"


def test_checks_run_at_1_khz_only_while_rss_rises_toward_the_collect_band(
    tmp_path: Path,
) -> None:
    rt = _offline(tmp_path, "imminent")
    mb = 2**20
    rt._update_near(10.0, 75 * mb)
    rt._update_near(10.5, 75 * mb)
    assert rt._near and rt._check_s == 1 / FAST_CHECK_HZ, "flat under the band: 200 Hz"
    rt._update_near(10.505, 78 * mb)  # 600 MB/s: the band (80 MB) is 2 checks away
    assert rt._check_s == 1 / IMMINENT_CHECK_HZ
    rt._update_near(10.506, 81 * mb)
    assert rt._check_s == 1 / FAST_CHECK_HZ, "in the band: back to 200 Hz"


def test_fresh_objects_count_what_the_collector_tracks_made_since_a_full_collection() -> None:
    """The controller's evidence that there can be new garbage: containers count, bytes
    do not, and a full collection starts the count again (automatic collections or not)."""
    from hivemind.swarm.target.runtime import _fresh_objects

    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        for on in (True, False):
            gc.enable() if on else gc.disable()
            gc.set_threshold(700, 10, 10)
            gc.collect()
            assert _fresh_objects() < 700
            blobs = [b"x" * 4096 for _ in range(5_000)]  # one list; bytes are not tracked
            assert _fresh_objects() < 700 + 10, _fresh_objects()
            kept = [[] for _ in range(20_000)]  # 20,000 tracked containers, alive
            assert _fresh_objects() >= 15_000, _fresh_objects()
            del blobs, kept
            gc.collect()
            assert _fresh_objects() < 700
    finally:
        gc.set_threshold(*thresholds)
        gc.enable() if enabled else gc.disable()
