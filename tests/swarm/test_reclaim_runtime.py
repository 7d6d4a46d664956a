"""A guarded process gives back a cache it never registered, and the swarm shows it.

The four agent cores run in this process (no Ray) against a real embedded
redis-server; the runtime finds a module-level ``lru_cache``, clears it when
RSS is over the target, acks what it freed, and ``swarm status`` and
``session show`` list the caches and the reclaims.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from hivemind.agents.memtools import current_rss_bytes
from hivemind.swarm.cli.app import run
from hivemind.swarm.messages import Ack, parse_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.conftest import wait_for
from tests.reliability.inproc import InProcessSwarm

MB = 2**20


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[InProcessSwarm]:
    state = tmp_path / ".hivemind"
    server = EmbeddedRedis(state)
    server.start()
    ns = f"r{uuid.uuid4().hex[:8]}"
    sw = InProcessSwarm(url=server.url, namespace=ns, secret=read_secret(state), state_dir=state)
    info = SwarmInfo(
        pid=os.getpid(), namespace=ns, redis_url=server.url, embedded=True, state="ready"
    )
    write_info(state, info)
    lock = SupervisorLock(state)  # what `swarm status` checks: a live supervisor holds it
    lock.acquire()
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()
        lock.release()
        server.stop()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ModuleType]:
    name = f"hm_guarded_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{name}.py").write_text(
        "import functools\n\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def render(n):\n"
        "    return ('<p>%d</p>' % n) * 2000\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_unregistered_cache_is_reclaimed_acked_and_shown(
    swarm: InProcessSwarm, app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3000):  # ~60 MB of memo entries the app never told us about
        app.render(i)
    target_mb = (current_rss_bytes() - 30 * MB) / MB
    acks = connect(swarm.url).pubsub(ignore_subscribe_messages=True)
    acks.subscribe(swarm.keys.acks)
    rt = swarm.add_runtime("guarded", target_mb)
    assert wait_for(swarm.subscribed, 10)
    mine = f"cache:{app.__name__}.render"
    got: Ack | None = None
    deadline = time.monotonic() + 15
    while got is None and time.monotonic() < deadline:
        msg = acks.get_message(timeout=0.5)
        if msg is None:
            continue
        ack = parse_message(msg["data"])
        if isinstance(ack, Ack) and any(r.name == mine for r in ack.results):
            got = ack
    acks.close()
    assert got is not None, "no ack reported the discovered cache's reclaim"
    assert app.render.cache_info().currsize < 3000
    result = next(r for r in got.results if r.name == mine)
    assert result.ok and result.expected_bytes > 20 * MB
    assert app.render(5) == "<p>5</p>" * 2000, "the cleared cache still works"
    assert rt.reclaim_hook.reclaimer.discovery.scans >= 1

    sid = swarm.coordinator.session_id
    assert wait_for(
        lambda: swarm.coordinator.store.snapshot(sid, recent=0).reclaim.get("guarded"), 10
    )
    assert wait_for(lambda: "reclaim" in _target_hash(swarm), 5)
    state = str(swarm.state_dir)
    assert run(["swarm", "status", "--state-dir", state]) == 0
    out = capsys.readouterr().out
    assert "caches found" in out and "last reclaims" in out
    assert run(["swarm", "status", "--state-dir", state, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    target = next(t for t in status["targets"] if t["name"] == "guarded")
    assert target["reclaim"]["scans"] >= 1
    assert run(["session", "show", sid, "--state-dir", state, "--namespace", swarm.namespace]) == 0
    out = capsys.readouterr().out
    assert "guarded: last reclaims" in out and mine[:40] in out
    assert result.bytes_freed > 10 * MB, "measured: RSS or the C heap gave back"


def _target_hash(swarm: InProcessSwarm) -> dict[str, str]:
    c = connect(swarm.url)
    try:
        raw = c.hgetall(swarm.keys.target("guarded"))
        return {k.decode(): v.decode() for k, v in raw.items()}
    finally:
        c.close()
