"""The swarm's figures for Prometheus, read from Redis at scrape time.

:class:`SwarmCollector` is a custom ``prometheus_client`` collector: every
scrape reads the namespace's keys (one pipeline for the swarm-wide hashes,
one SCAN plus a pipeline for the targets), so the exporter keeps no state of
its own and shows exactly what ``swarm status`` would. A scrape costs a few
Redis round trips: about a millisecond with a handful of targets.

Exported (every series carries ``namespace``):

* ``hivemind_up``: 1 if Redis answered this scrape, else 0 (and nothing else);
* ``hivemind_swarm_level{level}``: 1 for the swarm's current level, 0 for the others;
* ``hivemind_{samples,events,decisions,commands,acks,refused}_total``,
  ``hivemind_freed_bytes_total``: swarm-wide counters;
* ``hivemind_reaction_latency_seconds``: histogram, sample crossing -> command applied;
* ``hivemind_bus_errors_total{channel}``: malformed messages dropped;
* ``hivemind_bad_values_total``: fields in Redis that did not parse (read as 0);
* per target (label ``target``): ``hivemind_target_rss_bytes``,
  ``hivemind_target_memory_target_bytes``, ``hivemind_target_level{level}``,
  ``hivemind_target_last_seen_timestamp_seconds``, ``hivemind_target_info{pid,
  last_action}`` and ``hivemind_target_{samples,...}_total``;
  what guarding costs it, measured in the target: ``hivemind_target_gc_seconds_per_second``,
  ``hivemind_target_gc_pause_p99_seconds``, ``hivemind_target_guard_cpu_ratio``, and
  ``hivemind_target_infeasible_over_bytes`` (live data over the target when the target
  cannot be met, "infeasible: live ~N MB over target"; 0 otherwise).

:func:`start_metrics_server` serves them over HTTP (127.0.0.1 by default).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from hivemind.swarm.errors import UsageError
from hivemind.swarm.keys import LATENCY_BUCKETS_MS, Keys, validate_namespace
from hivemind.swarm.vocab import LEVELS

__all__ = ["COUNTER_FIELDS", "MetricsServer", "SwarmCollector", "start_metrics_server"]

COUNTER_FIELDS: dict[str, tuple[str, str]] = {
    # Redis hash field -> (metric name without _total, help)
    "samples": ("samples", "Memory samples received from targets"),
    "events": ("events", "Pressure events published"),
    "decisions": ("decisions", "Decisions taken by the coordinator"),
    "commands": ("commands", "Signed commands sent to targets"),
    "acks": ("acks", "Acks received from targets"),
    "bytes_freed": ("freed_bytes", "Bytes freed, as reported by targets' acks"),
    "refused": ("refused", "Commands a target refused"),
}


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _parse(v: Any) -> float | None:
    """``v`` as a finite float, or ``None`` when it does not parse."""
    try:
        x = float(_text(v))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _hash(raw: dict[Any, Any] | None) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (raw or {}).items()}


class SwarmCollector(Collector):
    """Reads one namespace's swarm state from Redis on every ``collect()``."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.keys = Keys(validate_namespace(namespace))
        self.namespace = namespace
        self.bad_values = 0  # fields in Redis that did not parse, over all scrapes

    def _num(self, v: Any) -> float:
        """``v`` as a number; a value that does not parse is 0 and counted."""
        x = _parse(v)
        if x is None:
            self.bad_values += 1
            return 0.0
        return x

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not touch Redis."""
        return []

    def collect(self) -> Iterator[Metric]:
        ns = self.namespace
        up = GaugeMetricFamily(
            "hivemind_up", "1 if Redis answered this scrape", labels=["namespace"]
        )
        try:
            swarm, counters, bus, latency, targets, restarts = self._read()
        except (redis.RedisError, OSError):
            up.add_metric([ns], 0)
            yield up
            return
        up.add_metric([ns], 1)
        yield up

        level = swarm.get("level", "")
        lv = GaugeMetricFamily(
            "hivemind_swarm_level", "1 for the swarm's current level", labels=["namespace", "level"]
        )
        for name in LEVELS:
            lv.add_metric([ns, name], 1.0 if name == level else 0.0)
        yield lv

        for fld, (name, help_) in COUNTER_FIELDS.items():
            c = CounterMetricFamily(f"hivemind_{name}", help_, labels=["namespace"])
            c.add_metric([ns], self._num(counters.get(fld, 0)))
            yield c

        yield self._latency(latency)

        be = CounterMetricFamily(
            "hivemind_bus_errors", "Malformed bus messages dropped", labels=["namespace", "channel"]
        )
        for channel, count in sorted(bus.items()):
            be.add_metric([ns, channel], self._num(count))
        yield be

        rs = CounterMetricFamily(
            "hivemind_restarts",
            "Restarts the supervisor made (redis, ray_head, an agent role, supervisor)",
            labels=["namespace", "component"],
        )
        for component, count in sorted(restarts.items()):
            rs.add_metric([ns, component], self._num(count))
        yield rs

        yield from self._targets(targets)

        bad = CounterMetricFamily(
            "hivemind_bad_values",
            "Fields in Redis that did not parse (read as 0), over all scrapes",
            labels=["namespace"],
        )
        bad.add_metric([ns], self.bad_values)
        yield bad

    def _read(
        self,
    ) -> tuple[
        dict[str, str],
        dict[str, str],
        dict[str, str],
        dict[str, str],
        list[tuple[str, dict[str, str], dict[str, str]]],
        dict[str, str],
    ]:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k.swarm)
        pipe.hgetall(k.counters)
        pipe.hgetall(k.bus_errors)
        pipe.hgetall(k.latency)
        pipe.hgetall(k.restarts)
        swarm, counters, bus, latency, restarts = (_hash(x) for x in pipe.execute())
        prefix = k.target("")
        names = sorted(
            {_text(key)[len(prefix) :] for key in self.client.scan_iter(match=k.target_pattern)}
        )
        targets: list[tuple[str, dict[str, str], dict[str, str]]] = []
        if names:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(k.target(name))
                pipe.hgetall(k.target_counters(name))
            raw = pipe.execute()
            for i, name in enumerate(names):
                state, tc = _hash(raw[2 * i]), _hash(raw[2 * i + 1])
                if state:  # expired between SCAN and HGETALL
                    targets.append((state.get("name") or name, state, tc))
        return swarm, counters, bus, latency, targets, restarts

    def _latency(self, h: dict[str, str]) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        cumulative = 0.0
        for bound in LATENCY_BUCKETS_MS:
            cumulative += self._num(h.get(f"le_{bound:g}", 0))
            buckets.append((f"{bound / 1000:g}", cumulative))
        cumulative += self._num(h.get("le_inf", 0))
        # count is the writer's own total; keep +Inf consistent with the buckets we saw.
        buckets.append(("+Inf", max(cumulative, self._num(h.get("count", 0)))))
        hist = HistogramMetricFamily(
            "hivemind_reaction_latency_seconds",
            "Reaction latency: sample crossing a level -> command applied in the target",
            labels=["namespace"],
        )
        hist.add_metric([self.namespace], buckets, sum_value=self._num(h.get("sum_ms", 0)) / 1000)
        return hist

    def _targets(
        self, targets: list[tuple[str, dict[str, str], dict[str, str]]]
    ) -> Iterator[Metric]:
        ns = self.namespace
        lab = ["namespace", "target"]
        rss = GaugeMetricFamily(
            "hivemind_target_rss_bytes", "Target's resident set size", labels=lab
        )
        tgt = GaugeMetricFamily(
            "hivemind_target_memory_target_bytes", "Target's memory target", labels=lab
        )
        seen = GaugeMetricFamily(
            "hivemind_target_last_seen_timestamp_seconds",
            "Unix time of the target's last sample",
            labels=lab,
        )
        level = GaugeMetricFamily(
            "hivemind_target_level", "1 for the target's current level", labels=[*lab, "level"]
        )
        info = GaugeMetricFamily(
            "hivemind_target_info",
            "Target pid and last action",
            labels=[*lab, "pid", "last_action"],
        )
        gauges = {
            fld: (GaugeMetricFamily(name, help_, labels=lab), scale)
            for fld, name, help_, scale in (
                ("gc_ms_per_s", "hivemind_target_gc_seconds_per_second",
                 "Time the app spends in the collector per second", 1e-3),
                ("pause_p99_ms", "hivemind_target_gc_pause_p99_seconds",
                 "Collection pause p99 in the target", 1e-3),
                ("guard_cpu_pct", "hivemind_target_guard_cpu_ratio",
                 "The guard thread's CPU, share of one core", 1e-2),
                ("live_over_bytes", "hivemind_target_infeasible_over_bytes",
                 "Infeasible: live data over the target (0 when feasible)", 1.0),
            )
        }  # fmt: skip
        counters = {
            fld: CounterMetricFamily(f"hivemind_target_{name}", f"{help_}, per target", labels=lab)
            for fld, (name, help_) in COUNTER_FIELDS.items()
        }
        for name, state, tc in targets:
            rss.add_metric([ns, name], self._num(state.get("rss_bytes", 0)))
            tgt.add_metric([ns, name], self._num(state.get("target_bytes", 0)))
            seen.add_metric([ns, name], self._num(state.get("last_seen", 0)))
            for lvl in LEVELS:
                level.add_metric([ns, name, lvl], 1.0 if state.get("level") == lvl else 0.0)
            info.add_metric([ns, name, state.get("pid", ""), state.get("last_action", "")], 1)
            for fld, c in counters.items():
                c.add_metric([ns, name], self._num(tc.get(fld, 0)))
            for fld, (g, scale) in gauges.items():
                g.add_metric([ns, name], self._num(state.get(fld, 0)) * scale)
        yield from (rss, tgt, seen, level, info, *(g for g, _ in gauges.values()))
        yield from counters.values()


@dataclass(slots=True)
class MetricsServer:
    """A running exporter; ``stop()`` shuts the HTTP server and closes its Redis client."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread
    _client: redis.Redis

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving (idempotent); returns once the server thread has ended."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._client.close()


def start_metrics_server(
    redis_url: str, namespace: str, port: int, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve ``/metrics`` for ``namespace`` on ``host:port`` (port 0: any free port).

    Connects to Redis once up front (:class:`RedisUnavailableError` if it is
    down); afterwards a Redis outage shows as ``hivemind_up 0``, never as an
    HTTP error. Raises :class:`UsageError` for a bad namespace or port, or a
    port already in use. Runs in a daemon thread; call ``.stop()``.
    """
    from prometheus_client.exposition import start_http_server

    from hivemind.swarm.redis.connection import connect

    try:
        validate_namespace(namespace)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise UsageError(f"metrics port must be 0-65535, got {port!r}")
    client = connect(redis_url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwarmCollector(client, namespace))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        client.close()
        raise UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return MetricsServer(host, int(server.server_port), server, thread, client)
