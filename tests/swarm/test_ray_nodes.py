"""Benchmarkers per node and sample slots; the swarm on a real two-node Ray cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hivemind.swarm.keys import SAMPLE_SLOTS, Keys, parse_slots, pick_slot
from hivemind.swarm.lifecycle.placement import Shard, assign_slots
from hivemind.swarm.redis.bus import peek_message
from hivemind.swarm.redis.connection import connect
from tests.conftest import pid_gone, wait_for
from tests.swarm.ray_cluster import LocalCluster

LEAKY = str(Path(__file__).with_name("leaky_app.py"))


def test_slots_are_dealt_disjoint_and_complete() -> None:
    shards = [Shard("ns.benchmarker", "n1", "a"), Shard("ns.benchmarker.1", "n2", "b")]
    per_bench, per_node = assign_slots(shards)
    assert sorted(per_bench["ns.benchmarker"] + per_bench["ns.benchmarker.1"]) == list(
        range(SAMPLE_SLOTS)
    )
    assert per_node == {"a": per_bench["ns.benchmarker"], "b": per_bench["ns.benchmarker.1"]}
    three = [*shards, Shard("ns.benchmarker.2", "n1", "a")]
    per_bench, per_node = assign_slots(three)
    assert [len(v) for v in per_bench.values()] == [6, 5, 5]
    assert sorted(per_node["a"] + per_node["b"]) == list(range(SAMPLE_SLOTS))
    assert assign_slots([]) == ({}, {})


def test_a_target_picks_a_slot_of_its_node_else_its_hash() -> None:
    assert parse_slots(b"1,3,x,99, 5") == [1, 3, 5]
    assert parse_slots(None) == []
    names = [f"app-{i}" for i in range(200)]
    assert {pick_slot(n) for n in names} == set(range(SAMPLE_SLOTS))  # spread over all slots
    assert {pick_slot(n, b"2,7") for n in names} == {2, 7}
    assert pick_slot("x", b"") == pick_slot("x")


# --- a real cluster: head + a node that joins --------------------------------


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    try:
        c.start("node1")
        yield c
    finally:
        c.stop()


def _guarded(name: str, node: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from hivemind.entry import main; main()", "run",
         "--target-mb", "60", "--name", name, "--", sys.executable, LEAKY, "60", "40"],
        env={**env, "HIVEMIND_NODE": node}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_a_benchmarker_per_node_and_samples_stay_on_their_node(cluster: LocalCluster) -> None:
    state = cluster.root / "st"
    state.mkdir(mode=0o700)
    ns = "nd" + os.urandom(3).hex()
    keys = Keys(ns)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "RAY_"))}
    env = {
        **base,
        **cluster.driver_env(),
        "HIVEMIND_STATE_DIR": str(state),
        "HIVEMIND_NAMESPACE": ns,
        "HIVEMIND_RAY_ADDRESS": cluster.address,
    }
    sup = subprocess.Popen(
        [sys.executable, "-m", "hivemind.swarm.lifecycle.supervisor"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(cluster.root / "sup.log", "wb"),  # noqa: SIM115
    )
    apps: list[subprocess.Popen[str]] = []
    try:

        def ready() -> bool:
            assert sup.poll() is None, (cluster.root / "sup.log").read_text()[-2000:]
            try:
                return bool(json.loads((state / "swarm.json").read_text())["state"] == "ready")
            except (OSError, ValueError):
                return False

        assert wait_for(ready, 180, 0.1)
        info = json.loads((state / "swarm.json").read_text())
        c = connect(info["redis_url"])
        assert set(c.hkeys(keys.sample_nodes)) == {b"node1"}
        assert parse_slots(c.hget(keys.sample_nodes, "node1")) == list(range(SAMPLE_SLOTS))

        # A node joins: it gets its own benchmarker, pinned there, and half the slots.
        cluster.add_node("node2")

        def two_nodes() -> bool:
            return set(c.hkeys(keys.sample_nodes)) == {b"node1", b"node2"}

        assert wait_for(two_nodes, 120, 0.2), c.hgetall(keys.bench_slots)
        bench = {k.decode(): parse_slots(v) for k, v in c.hgetall(keys.bench_slots).items()}
        assert len(bench) == 2
        node_slots = {n: parse_slots(c.hget(keys.sample_nodes, n)) for n in ("node1", "node2")}
        assert sorted(node_slots["node1"] + node_slots["node2"]) == list(range(SAMPLE_SLOTS))
        beats = {name: c.hgetall(keys.agent(name)) for name in bench}
        assert {b[b"node"] for b in beats.values()} == {b"node1", b"node2"}

        # Guarded processes on each node find the swarm through the Redis URL alone.
        watcher = c.pubsub(ignore_subscribe_messages=True)
        watcher.psubscribe(f"hm:{ns}:samples:*")
        app_env = {
            **base,
            "HIVEMIND_REDIS_URL": info["redis_url"],
            "HIVEMIND_NAMESPACE": ns,
            "HIVEMIND_SECRET": (state / "secret").read_text().strip(),
        }
        apps = [_guarded("on1", "node1", app_env), _guarded("on2", "node2", app_env)]
        seen: dict[str, set[int]] = {"on1": set(), "on2": set()}

        def both_acted() -> bool:
            while (m := watcher.get_message(timeout=0.05)) is not None:
                target = peek_message(m["data"]).target  # type: ignore[union-attr]
                seen[target].add(int(m["channel"].decode().rsplit(":", 1)[1]))
            acks = [int(c.hget(keys.target_counters(t), "acks") or 0) for t in ("on1", "on2")]
            return all(acks)

        assert wait_for(both_acted, 90, 0.1), (c.hgetall(keys.counters), seen)
        # Each target published only on slots its own node's benchmarker reads.
        assert seen["on1"] and seen["on1"] <= set(node_slots["node1"]), (seen, node_slots)
        assert seen["on2"] and seen["on2"] <= set(node_slots["node2"]), (seen, node_slots)
        watcher.close()
        c.close()
    finally:
        for app in apps:
            if app.poll() is None:
                for p in [*psutil.Process(app.pid).children(recursive=True)]:
                    p.kill()
                app.kill()
            app.communicate(timeout=10)
        tree = [sup.pid]
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            sup.wait(60)
    assert all(pid_gone(p) for p in tree)
