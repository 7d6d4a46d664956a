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
import subprocess
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
from hivemind.swarm.seal import unseal
from hivemind.swarm.secret import read_secret
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.conftest import offline_runtime, wait_for
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
        ack = parse_message(unseal(msg["data"], swarm.secret))  # acks are sealed
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


def test_run_explain_reports_without_guarding(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import functools, threading\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def page(n):\n"
        "    return ('<li>%d</li>' % n) * 300\n"
        "for _ in range(2):\n"
        "    for i in range(3000):\n"
        "        page(i)\n"
        "print('app done')\n"
    )
    hivemind = Path(sys.executable).parent / "hivemind"
    report = tmp_path / "explain.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["HIVEMIND_EXPLAIN_JSON"] = str(report)
    proc = subprocess.run(
        [str(hivemind), "run", "--explain", "--", sys.executable, str(app)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "app done" in proc.stdout
    assert "cache:__main__.page" in proc.stderr and "tracemalloc live" in proc.stderr
    data = json.loads(report.read_text())
    page = next(c for c in data["candidates"] if c["name"] == "cache:__main__.page")
    assert page["entries"] == 3000 and page["hit_rate"] == pytest.approx(0.5)
    assert page["bytes"] > 3000 * 300 * 10, "3000 strings of ~4 KB"
    assert data["heap"]["traced_live"] > 0


def test_run_rejects_bad_reclaim_options() -> None:
    assert run(["run", "--malloc-arena-max", "0", "--", sys.executable, "-c", "pass"]) == 2
    assert run(["run", "--explain-after", "-1", "--", sys.executable, "-c", "pass"]) == 2


def test_the_controller_chooses_a_discovered_cache_when_a_collection_is_due(
    app: ModuleType, tmp_path: Path
) -> None:
    """No swarm: the in-target controller plans the reclaim, the hook runs it, measured."""
    import gc

    for i in range(3000):
        app.render(i)
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    target_mb = current_rss_bytes() / 0.9 / MB  # 90 %: a full collection is due (85 %)
    rt = offline_runtime(tmp_path / "none", "ctl", target_mb).start()
    try:
        assert wait_for(lambda: app.render.cache_info().currsize == 0, 15), "not reclaimed"
        mine = f"cache:{app.__name__}.render"
        reclaimer = rt.reclaim_hook.reclaimer
        # The cache is empty as soon as the clear ran; its outcome is recorded just after,
        # in a new list (history is replaced, not appended to): read it afresh each time.
        assert wait_for(lambda: any(o.name == mine for o in reclaimer.history), 5), "not recorded"
        out = next(o for o in reclaimer.history if o.name == mine)
        assert out.ok and out.expected_bytes > 20 * MB and out.bytes_freed > 10 * MB
        assert app.render(3) == "<p>3</p>" * 2000
    finally:
        rt.stop()
        gc.set_threshold(*thresholds)
        (gc.enable if enabled else gc.disable)()
