"""``hivemind session plot``: a real session (in-process agents, a real runtime over its
target, real decisions and acks) drawn to a PNG whose content and size are checked."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.coordinator.sessions.store import decode_events
from hivemind.swarm.cli.app import run
from hivemind.swarm.cli.session_plot import build_figure, load_plot_data
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Ack
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from tests.reliability.inproc import InProcessSwarm


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture
def live_session(
    embedded: EmbeddedRedis, client: redis.Redis, state_dir: Path, namespace: str
) -> Iterator[str]:
    """Agents in this process, two runtimes (one far over its target) for a few seconds."""
    lock = SupervisorLock(state_dir)
    lock.acquire()
    write_info(state_dir, SwarmInfo(os.getpid(), namespace, embedded.url, True, state="ready"))
    swarm = InProcessSwarm(url=embedded.url, namespace=namespace, secret=os.urandom(32))
    swarm.start()
    type(swarm.benchmarker).series_every_s = 0.5  # several entries within the test
    try:
        deadline = time.monotonic() + 10
        while not swarm.subscribed() and time.monotonic() < deadline:
            time.sleep(0.05)
        swarm.add_runtime("over-target", target_mb=16)  # this test process is far above 16 MB
        swarm.add_runtime("at-ease", target_mb=4096)
        keys = Keys(namespace)
        sid = swarm.coordinator.session_id
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            decided = int(client.hget(keys.counters, "decisions") or 0)
            if decided >= 1 and client.xlen(keys.session_memory(sid)) >= 4:
                break
            time.sleep(0.1)
        if not int(client.hget(keys.counters, "acks") or 0):
            # The target's own controller may have held it without a command; ack the
            # first decision as a target would, so the plot has an ack to mark.
            first = next(
                e for e in decode_events(client.xrange(keys.session_events(sid)))
                if e.kind == "decision"
            )  # fmt: skip
            ack = Ack(command_id="cmd-plot-test", decision_id=first.data["decision_id"],
                      target="over-target", ok=True, bytes_freed=2**20)  # fmt: skip
            client.publish(keys.acks, ack.model_dump_json())
            deadline = time.monotonic() + 5
            while not int(client.hget(keys.counters, "acks") or 0):
                assert time.monotonic() < deadline, "the coordinator recorded no ack"
                time.sleep(0.05)
        yield sid
    finally:
        type(swarm.benchmarker).series_every_s = 2.0
        swarm.stop()
        lock.release()


def test_plot_shows_each_target_with_decisions_acks_and_levels(
    live_session: str,
    client: redis.Redis,
    namespace: str,
    state_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = live_session
    data = load_plot_data(client, Keys(namespace), sid)
    assert set(data.targets) == {"over-target", "at-ease"}
    over = data.targets["over-target"]
    assert len(over.ts) >= 4 and over.decisions and over.acks
    assert all(t == 16.0 for t in over.target_mb)
    fig = build_figure(data)
    panels = {ax.get_title(loc="left").split(":")[0]: ax for ax in fig.axes}
    assert set(panels) == {"over-target", "at-ease"}
    ax = panels["over-target"]
    gids = {a.get_gid() for a in ax.get_children()}
    assert {"rss", "target", "decisions", "acks", "level:emergency"} <= gids
    marks = next(c for c in ax.collections if c.get_gid() == "decisions")
    assert len(marks.get_offsets()) == len(over.decisions)
    calm = {a.get_gid() for a in panels["at-ease"].get_children()}
    assert {"rss", "target"} <= calm and "decisions" not in calm
    assert not any(str(g).startswith("level:") for g in calm)

    out = tmp_path / "session.png"
    code = run(["session", "plot", sid, "--out", str(out), "--state-dir", str(state_dir)])
    assert code == 0, capsys.readouterr().err
    width, height = png_size(out)
    assert (width, height) == (1000, int((0.8 + 2.3 * 2) * 100))
    assert out.stat().st_size > 20_000  # two panels of lines and marks, not an empty canvas

    code = run(["session", "show", sid, "--state-dir", str(state_dir)])
    assert code == 0 and f"hivemind session plot {sid}" in capsys.readouterr().out


def test_plot_refuses_a_symlink_and_unknown_sessions(
    embedded: EmbeddedRedis,
    client: redis.Redis,
    namespace: str,
    state_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lock = SupervisorLock(state_dir)
    lock.acquire()
    try:
        write_info(state_dir, SwarmInfo(os.getpid(), namespace, embedded.url, True, state="ready"))
        keys = Keys(namespace)
        client.hset(keys.session("s1"), mapping={"id": "s1", "first_ts": time.time()})
        client.xadd(keys.session_memory("s1"), {"ts": time.time(), "data": '{"a":[10,20,0]}'})
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        link = tmp_path / "plot.png"
        link.symlink_to(victim)
        argv = ["session", "plot", "s1", "--out", str(link), "--state-dir", str(state_dir)]
        assert run(argv) == 2
        err = capsys.readouterr().err
        assert "symlink" in err and len(err.strip().splitlines()) == 1
        assert victim.read_text() == "keep me"
        argv = ["session", "plot", "nope", "--out", str(tmp_path / "x.png")]
        assert run([*argv, "--state-dir", str(state_dir)]) == 1
        assert "unknown session" in capsys.readouterr().err
        assert run(["session", "plot", "s1", "--out", str(tmp_path / "x.txt")]) == 2
        capsys.readouterr()
    finally:
        lock.release()
