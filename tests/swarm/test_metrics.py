"""The Prometheus exporter, scraped over HTTP from a real embedded redis-server."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from hivemind.swarm.errors import UsageError
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Action, ActionKind, Command, MemorySample
from hivemind.swarm.observe.metrics import start_metrics_server
from hivemind.swarm.redis.bus import wire
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from tests.conftest import wait_for
from tests.reliability.inproc import InProcessSwarm


def _scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(family: Any, name: str, **labels: str) -> float:
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name} {labels} in {family.samples}")


def test_scrape_reads_swarm_state(
    embedded: EmbeddedRedis, client: redis.Redis, keys: Keys, namespace: str
) -> None:
    client.hset(keys.swarm, mapping={"level": "aggressive", "pid": "1"})
    client.hset(
        keys.counters,
        mapping={
            "samples": 120,
            "events": 7,
            "decisions": 5,
            "commands": 4,
            "acks": 4,
            "bytes_freed": 3_000_000,
            "refused": 1,
        },
    )
    for name, rss, level in (("app", 700 * 2**20, "emergency"), ("tui", 100 * 2**20, "balanced")):
        client.hset(
            keys.target(name),
            mapping={
                "name": name,
                "pid": "4242",
                "rss_bytes": rss,
                "target_bytes": 512 * 2**20,
                "level": level,
                "last_action": "evict_caches",
                "last_seen": 1700000000.5,
                "controller": "infeasible" if name == "app" else "engaged",
                "live_over_bytes": 188 * 2**20 if name == "app" else 0,
                "gc_ms_per_s": 12.5,
                "pause_p99_ms": 4.0,
                "guard_cpu_pct": 0.5,
            },
        )
    client.hset(keys.bus_errors, mapping={keys.samples: 2, keys.acks: 1})
    client.hset(keys.restarts, mapping={"redis": 2, "coordinator": 1})
    client.hset(
        keys.latency,
        mapping={"le_5": 1, "le_10": 2, "le_250": 1, "le_inf": 1, "sum_ms": 3100.5, "count": 5},
    )
    # Keys of another namespace must not show up.
    other = Keys(namespace + "x")
    client.hset(other.target("stranger"), mapping={"name": "stranger", "rss_bytes": 1})

    srv = start_metrics_server(embedded.url, namespace, 0)
    try:
        assert srv.host == "127.0.0.1" and srv.port > 0
        fams = _scrape(f"http://127.0.0.1:{srv.port}/metrics")
    finally:
        srv.stop()

    assert _value(fams["hivemind_up"], "hivemind_up", namespace=namespace) == 1
    lv = fams["hivemind_swarm_level"]
    assert _value(lv, "hivemind_swarm_level", level="aggressive") == 1
    assert _value(lv, "hivemind_swarm_level", level="emergency") == 0
    assert _value(fams["hivemind_samples"], "hivemind_samples_total") == 120
    assert _value(fams["hivemind_decisions"], "hivemind_decisions_total") == 5
    assert _value(fams["hivemind_freed_bytes"], "hivemind_freed_bytes_total") == 3_000_000
    assert _value(fams["hivemind_refused"], "hivemind_refused_total") == 1

    h = fams["hivemind_reaction_latency_seconds"]
    assert h.type == "histogram"
    assert _value(h, "hivemind_reaction_latency_seconds_bucket", le="0.005") == 1
    assert _value(h, "hivemind_reaction_latency_seconds_bucket", le="0.01") == 3  # cumulative
    assert _value(h, "hivemind_reaction_latency_seconds_bucket", le="0.25") == 4
    assert _value(h, "hivemind_reaction_latency_seconds_bucket", le="+Inf") == 5
    assert _value(h, "hivemind_reaction_latency_seconds_count") == 5
    assert _value(h, "hivemind_reaction_latency_seconds_sum") == pytest.approx(3.1005)

    rs = fams["hivemind_restarts"]
    assert _value(rs, "hivemind_restarts_total", component="redis") == 2
    assert _value(rs, "hivemind_restarts_total", component="coordinator") == 1

    be = fams["hivemind_bus_errors"]
    assert _value(be, "hivemind_bus_errors_total", channel=keys.samples) == 2

    rss = fams["hivemind_target_rss_bytes"]
    assert {s.labels["target"] for s in rss.samples} == {"app", "tui"}
    assert _value(rss, "hivemind_target_rss_bytes", target="app") == 700 * 2**20
    tl = fams["hivemind_target_level"]
    assert _value(tl, "hivemind_target_level", target="app", level="emergency") == 1
    assert _value(tl, "hivemind_target_level", target="tui", level="emergency") == 0
    info = fams["hivemind_target_info"]
    assert _value(info, "hivemind_target_info", target="app", pid="4242") == 1
    seen = fams["hivemind_target_last_seen_timestamp_seconds"]
    assert _value(seen, "hivemind_target_last_seen_timestamp_seconds", target="app") == 1700000000.5
    inf = fams["hivemind_target_infeasible_over_bytes"]
    assert _value(inf, "hivemind_target_infeasible_over_bytes", target="app") == 188 * 2**20
    assert _value(inf, "hivemind_target_infeasible_over_bytes", target="tui") == 0
    gcs = fams["hivemind_target_gc_seconds_per_second"]
    assert _value(gcs, "hivemind_target_gc_seconds_per_second", target="tui") == 0.0125
    cpu = fams["hivemind_target_guard_cpu_ratio"]
    assert _value(cpu, "hivemind_target_guard_cpu_ratio", target="app") == pytest.approx(0.005)


def test_per_target_counters_come_from_the_loop(
    embedded: EmbeddedRedis, client: redis.Redis, namespace: str
) -> None:
    """``hivemind_target_{samples,events,refused}_total`` as the agents and runtime write them
    (nothing written by hand): real samples, one sealed sample over the target, one forgery."""
    swarm = InProcessSwarm(
        url=embedded.url,
        namespace=namespace,
        secret=read_secret(embedded.state_dir),
        state_dir=embedded.state_dir,
    )
    try:
        swarm.start()
        rt = swarm.add_runtime("counted", target_mb=100_000)
        assert wait_for(swarm.subscribed, 10)
        keys = swarm.keys
        over = MemorySample(
            target="counted", pid=1, seq=1, rss_bytes=900 << 20, target_bytes=1000 << 20
        )
        client.publish(keys.samples, wire(over, swarm.secret))  # -> event -> decision -> ack
        forged = Command(
            decision_id="d", target="counted", actions=(Action(kind=ActionKind.COLLECT),)
        )
        client.publish(keys.cmd("counted"), forged.model_dump_json())  # unsigned: refused
        tkey = keys.target_counters("counted")
        assert wait_for(lambda: int(client.hget(tkey, "events") or 0) >= 1, 10)
        assert wait_for(lambda: int(client.hget(tkey, "refused") or 0) == 1, 10)
        assert wait_for(lambda: client.exists(keys.target("counted")), 5)
        srv = start_metrics_server(embedded.url, namespace, 0)
        try:
            fams = _scrape(srv.url)
        finally:
            srv.stop()
    finally:
        swarm.stop()
    total = {
        f: _value(fams[f"hivemind_target_{f}"], f"hivemind_target_{f}_total", target="counted")
        for f in ("samples", "events", "refused")
    }
    assert total["samples"] >= 2 and total["events"] >= 1 and total["refused"] == 1, total
    assert rt.stats["refused_unsigned"] == 1


def test_empty_namespace_scrapes_zeroes(embedded: EmbeddedRedis, namespace: str) -> None:
    srv = start_metrics_server(embedded.url, namespace, 0)
    try:
        fams = _scrape(srv.url)
    finally:
        srv.stop()
    assert _value(fams["hivemind_up"], "hivemind_up") == 1
    assert _value(fams["hivemind_samples"], "hivemind_samples_total") == 0
    h = fams["hivemind_reaction_latency_seconds"]
    assert _value(h, "hivemind_reaction_latency_seconds_count") == 0
    assert not fams["hivemind_target_rss_bytes"].samples


def test_redis_gone_scrapes_up_zero(state_dir: Any, namespace: str) -> None:
    server = EmbeddedRedis(state_dir)
    server.start()
    srv = start_metrics_server(server.url, namespace, 0)
    try:
        server.stop()
        fams = _scrape(srv.url)
    finally:
        srv.stop()
    assert _value(fams["hivemind_up"], "hivemind_up") == 0
    assert "hivemind_samples" not in fams


def test_bad_arguments(embedded: EmbeddedRedis, namespace: str) -> None:
    with pytest.raises(UsageError, match="namespace"):
        start_metrics_server(embedded.url, "bad ns", 0)
    with pytest.raises(UsageError, match="port"):
        start_metrics_server(embedded.url, namespace, 70000)
    srv = start_metrics_server(embedded.url, namespace, 0)
    try:
        with pytest.raises(UsageError, match="cannot serve metrics"):
            start_metrics_server(embedded.url, namespace, srv.port)
    finally:
        srv.stop()
