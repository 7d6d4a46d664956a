"""The swarm's state as ``swarm status`` shows it, read from Redis without Ray.

:func:`collect_status` returns a :class:`SwarmStatus`: each agent (name,
role, pid, alive, restarts), each guarded target, the Redis in use, the
namespace, session and current pressure level, and the supervisor's health
record (``health.json``: what is down since when, restarts per part). When
Redis itself is down it still returns a status (``health="degraded"``,
``redis.reachable=False``) built from that record, never a connection error.
Whatever is in Redis is
data, not trusted structure: a field that does not parse (say ``HSET
hm:ns:target:x pid abc``) is shown as unknown and counted in
``bad_values``, never raised, so one malformed hash cannot stop the
status tick of a foreground ``swarm up``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel

from hivemind.swarm.errors import NotRunningError, RedisUnavailableError
from hivemind.swarm.health import COMPONENTS, Health, read_health
from hivemind.swarm.keys import Keys
from hivemind.swarm.observe.reclaim_view import reclaim_report
from hivemind.swarm.redis.connection import connect, redact_url
from hivemind.swarm.redis.server import pid_alive
from hivemind.swarm.state import SwarmInfo, running_swarm
from hivemind.swarm.vocab import AGENT_ROLES

__all__ = [
    "AgentStatus",
    "DownStatus",
    "RedisStatus",
    "SwarmStatus",
    "TargetStatus",
    "collect_status",
]


class AgentStatus(BaseModel):
    name: str
    role: str
    pid: int | None
    alive: bool
    restarts: int
    last_seen_s: float | None


class TargetStatus(BaseModel):
    name: str
    pid: int | None
    rss_mb: float
    target_mb: float
    level: str
    last_action: str
    alive: bool
    guard: str = ""  # in-target controller and what guarding costs (see _guard_line)
    infeasible_over_mb: float = 0.0
    reclaim: dict[str, Any] = {}  # caches found, last reclaims (swarm/target/planner.py)


class RedisStatus(BaseModel):
    mode: str  # "embedded" or "external"
    url: str  # password redacted
    version: str
    persistence: str
    used_memory_mb: float
    error: str = ""
    reachable: bool = True


class DownStatus(BaseModel):
    """One part of the swarm that is down: since when (epoch s), for how long, why."""

    component: str
    since: float
    down_s: float
    reason: str


class SwarmStatus(BaseModel):
    running: bool
    state: str
    pid: int
    namespace: str
    state_dir: str
    session_id: str
    level: str
    target_mb: float
    uptime_s: float
    redis: RedisStatus
    agents: list[AgentStatus]
    targets: list[TargetStatus]
    bus_errors: dict[str, int]
    counters: dict[str, int]
    bad_values: int = 0  # fields in Redis that did not parse (shown as unknown)
    health: str = "ok"  # "ok", "degraded" (something is down) or "restarting"
    down: list[DownStatus] = []
    restarts: dict[str, int] = {}
    problem: str = ""  # one line saying what is wrong ("" when healthy)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in client.hgetall(key).items()}


class _Reader:
    """Parses fields read from Redis; a value that does not parse counts as bad."""

    def __init__(self) -> None:
        self.bad = 0

    def num(self, raw: str | None, default: float | None = 0.0) -> float | None:
        if raw is None or raw == "":
            return default
        try:
            x = float(raw)
        except ValueError:
            self.bad += 1
            return default
        if not math.isfinite(x):
            self.bad += 1
            return default
        return x

    def integer(self, raw: str | None, default: int | None = 0) -> int | None:
        x = self.num(raw, None)
        if x is None:
            return default
        if not -(2**63) <= x < 2**63:
            self.bad += 1
            return default
        return int(x)

    def pid(self, raw: str | None) -> int | None:
        pid = self.integer(raw, None)
        if pid is not None and not 0 < pid < 2**31:
            self.bad += 1
            return None
        return pid

    def counts(self, h: dict[str, str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, v in h.items():
            n = self.integer(v, None)
            if n is not None:
                out[k] = n
        return out


def _redis_status(client: redis.Redis, info: SwarmInfo) -> RedisStatus:
    server = client.info("server")
    persistence = client.info("persistence")
    memory = client.info("memory")
    aof = "aof everysec" if persistence.get("aof_enabled") else "no aof"
    if persistence.get("aof_last_write_status", "ok") != "ok":
        aof += " (LAST WRITE FAILED)"
    return RedisStatus(
        mode="embedded" if info.embedded else "external",
        url=redact_url(info.redis_url),
        version=str(server.get("redis_version", "?")),
        persistence=aof,
        used_memory_mb=round(int(memory.get("used_memory", 0)) / 2**20, 1),
        error=_redis_error(memory, persistence),
    )


def _redis_error(memory: dict[str, Any], persistence: dict[str, Any]) -> str:
    """One line naming what stops Redis from taking writes, or "" when all is well."""
    problems = []
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if limit and used >= limit:
        mb = limit / 2**20
        policy = str(memory.get("maxmemory_policy", "noeviction"))
        effect = "writes are refused" if policy == "noeviction" else f"keys are evicted ({policy})"
        problems.append(f"redis is full (maxmemory {mb:.3g} MB reached): {effect}")
    write = str(persistence.get("aof_last_write_status", "ok"))
    rewrite = str(persistence.get("aof_last_bgrewrite_status", "ok"))
    if write != "ok" or rewrite != "ok":
        what = f"last write {write}, last rewrite {rewrite}"
        if write != "ok":
            what += " (disk full or unwritable?); writes are refused"
        problems.append(f"AOF writes failing: {what}")
    return "; ".join(problems)


def _agents(client: redis.Redis, keys: Keys, heartbeat_s: float, r: _Reader) -> list[AgentStatus]:
    now = time.time()
    restarts = _hash(client, keys.agent_restarts)
    out = []
    for role in AGENT_ROLES:
        name = f"{keys.ns}.{role}"
        beat = _hash(client, keys.agent(name))
        last = r.num(beat.get("last_seen"), None)
        age = now - last if last is not None else None
        out.append(
            AgentStatus(
                name=name,
                role=role,
                pid=r.pid(beat.get("pid")),
                alive=age is not None and age < 3 * heartbeat_s + 1.0,
                restarts=r.integer(restarts.get(name, beat.get("restarts"))) or 0,
                last_seen_s=round(age, 2) if age is not None else None,
            )
        )
    return out


def _targets(client: redis.Redis, keys: Keys, r: _Reader) -> list[TargetStatus]:
    out = []
    for key in sorted(client.scan_iter(match=keys.target_pattern, count=500)):
        t = _hash(client, _s(key))
        if not t:
            continue
        last_seen = r.num(t.get("last_seen")) or 0.0
        out.append(
            TargetStatus(
                name=t.get("name", _s(key).rsplit(":", 1)[-1])[:128],
                pid=r.pid(t.get("pid")),
                rss_mb=round((r.num(t.get("rss_bytes")) or 0.0) / 2**20, 1),
                target_mb=round((r.num(t.get("target_bytes")) or 0.0) / 2**20, 1),
                level=t.get("level", "conservative")[:32],
                last_action=t.get("last_action", "")[:128],
                alive=time.time() - last_seen < 5.0,
                guard=_guard_line(t),
                infeasible_over_mb=round((r.num(t.get("live_over_bytes")) or 0.0) / 2**20, 1),
                reclaim=reclaim_report(t.get("reclaim", "")),
            )
        )
    return out


def _health(
    state_dir: Path, info: SwarmInfo, redis_error: str
) -> tuple[str, list[DownStatus], dict[str, int], str]:
    """``(health, down, restarts, problem)`` from ``health.json``, the pids and Redis."""
    now = time.time()
    record = read_health(state_dir) or Health()
    down = [
        DownStatus(component=k, since=c.since, down_s=round(now - c.since, 1), reason=c.reason)
        for k, c in record.down().items()
    ]
    gone = info.state == "restarting" or (info.pid and not pid_alive(info.pid))
    if gone and not any(d.component == "supervisor" for d in down):
        since = record.updated or now
        why = f"supervisor {info.pid} gone; its keeper is starting it again"
        down.append(
            DownStatus(
                component="supervisor", since=since, down_s=round(now - since, 1), reason=why
            )
        )
    if redis_error and not any(d.component == "redis" for d in down):
        down.insert(0, DownStatus(component="redis", since=now, down_s=0.0, reason=redis_error))
    restarts = {k: record.part(k).restarts for k in COMPONENTS}
    restarts |= record.restarts()
    state = "ok"
    if down:
        state = "restarting" if info.state == "restarting" else "degraded"
    problem = ""
    if down:
        what = "; ".join(f"{d.component} down for {d.down_s:.1f}s ({d.reason})" for d in down)
        total = sum(restarts.values())
        problem = f"swarm {state}: {what}; {total} restart(s) so far"
    return state, down, restarts, problem


def _f(raw: str | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0


def _guard_line(t: dict[str, str]) -> str:
    """``engaged t0=500 · gc 12.0 ms/s · pause p50/p99 0.3/4.1 ms · guard 0.4 % cpu``."""
    if "controller" not in t:
        return ""
    state = t["controller"]
    if state == "infeasible":
        state = f"infeasible: live ~{_f(t.get('live_over_bytes')) / 2**20:.0f} MB over target"
    elif state == "engaged":
        state += f" t0={t.get('threshold0', '?')[:12]}"
    return (
        f"{state} · gc {_f(t.get('gc_ms_per_s')):.1f} ms/s · pause p50/p99 "
        f"{_f(t.get('pause_p50_ms')):.1f}/{_f(t.get('pause_p99_ms')):.1f} ms · "
        f"guard {_f(t.get('guard_cpu_pct')):.2f} % cpu, "
        f"{t.get('guard_collections', '0')[:12]} collections"
    )


def _unreachable_status(
    state_dir: Path, info: SwarmInfo, error: str, heartbeat_s: float
) -> SwarmStatus:
    health, down, restarts, problem = _health(state_dir, info, error)
    return SwarmStatus(
        running=True,
        state=info.state,
        pid=info.pid,
        namespace=info.namespace,
        state_dir=str(state_dir),
        session_id=info.session_id,
        level="unknown",
        target_mb=info.target_mb,
        uptime_s=round(time.time() - info.started_at, 1),
        redis=RedisStatus(
            mode="embedded" if info.embedded else "external",
            url=redact_url(info.redis_url),
            version="?",
            persistence="?",
            used_memory_mb=0.0,
            error=error,
            reachable=False,
        ),
        agents=[],
        targets=[],
        bus_errors={},
        counters={},
        health=health,
        down=down,
        restarts=restarts,
        problem=problem,
    )


def collect_status(
    state_dir: Path, heartbeat_s: float = 1.0, *, with_targets: bool = True
) -> SwarmStatus:
    """Read the swarm recorded in ``state_dir`` from Redis and its health record.

    ``with_targets=False`` leaves ``targets`` empty (``hivemind top`` reads
    them itself, pipelined, more often).

    Raises :class:`NotRunningError` when no swarm is up there. When its
    Redis cannot be reached the status says so (``redis.reachable`` False,
    ``health`` "degraded", ``problem`` one line) instead of raising.
    """
    info = running_swarm(state_dir)
    if info is None:
        last = read_health(state_dir)
        why = f" ({last.stopped_reason})" if last and last.stopped_reason else ""
        raise NotRunningError(
            f"no swarm is running on {state_dir}{why}; start one with `hivemind swarm up`"
        )
    try:
        client = connect(info.redis_url, timeout_s=1.0)
    except RedisUnavailableError as exc:
        return _unreachable_status(state_dir, info, str(exc), heartbeat_s)
    try:
        keys = Keys(info.namespace)
        swarm = _hash(client, keys.swarm)
        r = _Reader()
        agents = _agents(client, keys, heartbeat_s, r)
        targets = _targets(client, keys, r) if with_targets else []
        bus_errors = r.counts(_hash(client, keys.bus_errors))
        counters = r.counts(_hash(client, keys.counters))
        health, down, restarts, problem = _health(state_dir, info, "")
        return SwarmStatus(
            running=True,
            state=swarm.get("state", info.state),
            pid=info.pid,
            namespace=info.namespace,
            state_dir=str(state_dir),
            session_id=swarm.get("session_id", info.session_id),
            level=swarm.get("level", "conservative"),
            target_mb=info.target_mb,
            uptime_s=round(time.time() - info.started_at, 1),
            redis=_redis_status(client, info),
            agents=agents,
            targets=targets,
            bus_errors=bus_errors,
            counters=counters,
            bad_values=r.bad,
            health=health,
            down=down,
            restarts=restarts,
            problem=problem,
        )
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        return _unreachable_status(
            state_dir, info, f"Redis of the swarm failed: {exc}", heartbeat_s
        )
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"Redis of the swarm failed: {exc}") from None
    finally:
        client.close()
