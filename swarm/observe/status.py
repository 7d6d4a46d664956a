"""The swarm's state as ``swarm status`` shows it, read from Redis without Ray.

:func:`collect_status` returns a :class:`SwarmStatus`: each agent (name,
role, pid, alive, restarts), each guarded target, the Redis in use, the
namespace, session and current pressure level.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
from pydantic import BaseModel

from hivemind.swarm.errors import NotRunningError, RedisUnavailableError
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect, redact_url
from hivemind.swarm.state import SwarmInfo, running_swarm
from hivemind.swarm.vocab import AGENT_ROLES

__all__ = ["AgentStatus", "RedisStatus", "SwarmStatus", "TargetStatus", "collect_status"]


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
    reclaim: dict[str, Any] = {}  # caches found, last reclaims (swarm/target/planner.py)


class RedisStatus(BaseModel):
    mode: str  # "embedded" or "external"
    url: str  # password redacted
    version: str
    persistence: str
    used_memory_mb: float
    error: str = ""


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


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in client.hgetall(key).items()}


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


def _agents(client: redis.Redis, keys: Keys, heartbeat_s: float) -> list[AgentStatus]:
    now = time.time()
    restarts = _hash(client, keys.agent_restarts)
    out = []
    for role in AGENT_ROLES:
        name = f"{keys.ns}.{role}"
        beat = _hash(client, keys.agent(name))
        last = float(beat["last_seen"]) if "last_seen" in beat else None
        age = now - last if last is not None else None
        out.append(
            AgentStatus(
                name=name,
                role=role,
                pid=int(beat["pid"]) if "pid" in beat else None,
                alive=age is not None and age < 3 * heartbeat_s + 1.0,
                restarts=int(restarts.get(name, beat.get("restarts", 0))),
                last_seen_s=round(age, 2) if age is not None else None,
            )
        )
    return out


def _json_dict(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _targets(client: redis.Redis, keys: Keys) -> list[TargetStatus]:
    out = []
    for key in sorted(client.scan_iter(match=keys.target_pattern, count=500)):
        t = _hash(client, _s(key))
        if not t:
            continue
        out.append(
            TargetStatus(
                name=t.get("name", _s(key).rsplit(":", 1)[-1]),
                pid=int(t["pid"]) if t.get("pid") else None,
                rss_mb=round(int(t.get("rss_bytes", 0)) / 2**20, 1),
                target_mb=round(int(t.get("target_bytes", 0)) / 2**20, 1),
                level=t.get("level", "conservative"),
                last_action=t.get("last_action", ""),
                alive=time.time() - float(t.get("last_seen", 0)) < 5.0,
                reclaim=_json_dict(t.get("reclaim", "")),
            )
        )
    return out


def collect_status(state_dir: Path, heartbeat_s: float = 1.0) -> SwarmStatus:
    """Read the swarm recorded in ``state_dir`` from Redis.

    Raises :class:`NotRunningError` when no swarm is up there and
    :class:`RedisUnavailableError` when its Redis cannot be reached.
    """
    info = running_swarm(state_dir)
    if info is None:
        raise NotRunningError(
            f"no swarm is running on {state_dir}; start one with `hivemind swarm up`"
        )
    client = connect(info.redis_url)
    try:
        keys = Keys(info.namespace)
        swarm = _hash(client, keys.swarm)
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
            agents=_agents(client, keys, heartbeat_s),
            targets=_targets(client, keys),
            bus_errors={k: int(v) for k, v in _hash(client, keys.bus_errors).items()},
            counters={k: int(float(v)) for k, v in _hash(client, keys.counters).items()},
        )
    except redis.RedisError as exc:
        raise RedisUnavailableError(f"Redis of the swarm failed: {exc}") from None
    finally:
        client.close()
