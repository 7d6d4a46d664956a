"""``hivemind top`` against a real embedded Redis: Textual's own harness, and a real terminal.

The swarm record (``swarm.json`` plus the held ``swarm.lock``) is written
as the supervisor writes it; targets are real :class:`Runtime` threads or
hashes with the runtime's own fields; decisions and acks are the real wire
models published on the real channels.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.swarm.cli.top.app import TopApp
from hivemind.swarm.cli.top.detail import DetailScreen
from hivemind.swarm.cli.top.table import TargetTable
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Ack, Action, ActionKind, ActionResult, Decision, Level
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig

MB = 2**20
SID = "hm-20261126-top000"
SNAPSHOT = Path(__file__).parent / "snapshots" / "top_80x24.txt"


@pytest.fixture
def swarm_record(embedded: EmbeddedRedis, state_dir: Path, namespace: str) -> Iterator[None]:
    """``swarm.json`` and the supervisor's lock, held by this test as ``swarm up`` holds it."""
    lock = SupervisorLock(state_dir)
    lock.acquire()
    write_info(
        state_dir,
        SwarmInfo(
            pid=os.getpid(),
            namespace=namespace,
            redis_url=embedded.url,
            embedded=True,
            state="ready",
            session_id=SID,
        ),
    )
    try:
        yield
    finally:
        lock.release()


def runtime(embedded: EmbeddedRedis, namespace: str, name: str, target_mb: float) -> Runtime:
    return Runtime(
        RuntimeConfig(
            name=name,
            target_mb=target_mb,
            redis_url=embedded.url,
            namespace=namespace,
            state_dir=None,
            key=None,
            sample_hz=10.0,
            local_gc=False,
            status_every_s=0.2,
        )
    ).start()


def screen_text(app: TopApp) -> str:
    """The screen as a user sees it, one line per terminal row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def until(pred: Callable[[], bool], timeout: float = 8.0, app: TopApp | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time\n" + (screen_text(app) if app else ""))
        await asyncio.sleep(0.05)


def run_app(app: TopApp, scenario: Callable[[TopApp, object], Awaitable[None]], size=(80, 24)):
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)

    asyncio.run(asyncio.wait_for(main(), 60))


def decision(target: str, level: Level = Level.AGGRESSIVE, reclaim: str = "") -> Decision:
    now = time.time()
    actions = (
        (Action(kind=ActionKind.RECLAIM, name=reclaim),)
        if reclaim
        else (Action(kind=ActionKind.COLLECT, generation=2), Action(kind=ActionKind.MALLOC_TRIM))
    )
    return Decision(
        session_id=SID, target=target, level=level, actions=actions,
        reason="rss 95% of target", event_ts=now, sample_ts=now,
    )  # fmt: skip


def table_names(app: TopApp) -> list[str]:
    return list(app.query_one(TargetTable).order)


@pytest.mark.usefixtures("swarm_record")
def test_rows_follow_targets_and_decisions_reach_their_row(
    embedded: EmbeddedRedis, client: redis.Redis, state_dir: Path, namespace: str
) -> None:
    keys = Keys(namespace)
    a = runtime(embedded, namespace, "app-one", 512)
    b: list[Runtime] = []

    async def scenario(app: TopApp, pilot: object) -> None:
        await until(lambda: table_names(app) == ["app-one"])
        b.append(runtime(embedded, namespace, "worker-two", 64))
        await until(lambda: sorted(table_names(app)) == ["app-one", "worker-two"])
        d = decision("worker-two")
        client.publish(keys.decisions("gc_optimizer"), d.model_dump_json())
        await until(lambda: "→col+mtrim" in screen_text(app), app=app)
        await until(lambda: "worker-two aggr collect+malloc" in screen_text(app))  # the feed
        ack = Ack(
            command_id="c1", decision_id=d.id, target="worker-two", ok=True,
            bytes_freed=3 * MB, duration_ms=2.0,
            results=(ActionResult(kind=ActionKind.COLLECT, bytes_freed=3 * MB),),
        )  # fmt: skip
        client.publish(keys.acks, ack.model_dump_json())
        await until(lambda: "3.0M" in screen_text(app))
        a.stop()  # its hash goes at once
        await until(lambda: table_names(app) == ["worker-two"])

    try:
        run_app(TopApp(state_dir, period_s=0.1), scenario)
    finally:
        a.stop()
        for rt in b:
            rt.stop()


def _write_target(client: redis.Redis, keys: Keys, name: str, rss_mb: int, target_mb: int,
                  level: str, **extra: str) -> None:  # fmt: skip
    client.hset(
        keys.target(name),
        mapping={
            "name": name, "pid": 4242, "rss_bytes": rss_mb * MB, "target_bytes": target_mb * MB,
            "level": level, "last_action": "", "last_seen": time.time() + 3600, **extra,
        },
    )  # fmt: skip


@pytest.mark.usefixtures("swarm_record")
def test_sort_pause_detail_and_quit(client: redis.Redis, state_dir: Path, namespace: str) -> None:
    keys = Keys(namespace)
    client.hset(keys.swarm, mapping={"session_id": SID, "level": "aggressive"})
    _write_target(client, keys, "alpha", 100, 400, "conservative")
    _write_target(client, keys, "beta", 380, 400, "aggressive", gc_share="0.031")
    _write_target(client, keys, "gamma", 200, 400, "balanced")
    store = SessionStore(client, keys)
    store.ensure(SID, {"source": "test"})
    event = {"decision_id": "d1", "target": "beta", "level": "aggressive", "actions": ["collect:2"]}
    store.append(SID, "decision", {**event, "reason": "rss 95% of target"})
    store.learned_record(SID, "beta|collect:2", 5 * MB, 12.0)

    async def scenario(app: TopApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await until(lambda: len(table_names(app)) == 3)
        table = app.query_one(TargetTable)
        assert table.sort_name == "rss/target"
        assert table_names(app) == ["beta", "gamma", "alpha"]
        await pilot.press("s")  # by level
        await until(lambda: table.sort_name == "level")
        assert table_names(app) == ["beta", "gamma", "alpha"]
        await pilot.press("s")  # by freed (none yet: by name, descending)
        await pilot.press("s")  # by name
        await until(lambda: table.sort_name == "name")
        assert table_names(app) == ["alpha", "beta", "gamma"]
        assert "3.1" in screen_text(app)  # beta's GC time share, shown in percent
        # pause: a new target does not appear until unpaused
        await pilot.press("p")
        await until(lambda: "PAUSED" in screen_text(app))
        _write_target(client, keys, "delta", 10, 400, "conservative")
        await asyncio.sleep(0.5)
        assert "delta" not in table_names(app)
        await pilot.press("p")
        await until(lambda: "delta" in table_names(app))
        # the selection stays on its target through re-sorting (beta, since "rss/target")
        assert table.selected == "beta"
        await pilot.press("down", "up")
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, DetailScreen))
        await pilot.pause()
        text = screen_text(app)
        assert "beta" in text and "collect:2" in text and "learned" in text
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, DetailScreen))
        await pilot.click(TargetTable, offset=(3, 3))  # the mouse selects a row too
        await pilot.pause()
        assert table.selected == "delta"  # alpha, beta, delta, gamma: third row
        await pilot.press("q")
        await until(lambda: not app.is_running)

    run_app(TopApp(state_dir, period_s=0.1), scenario)


def _normalise(text: str, namespace: str) -> str:
    text = text.replace(namespace, "NAMESPACE")
    text = re.sub(r"redis embedded [\d.]+MB", "redis embedded X", text)
    text = re.sub(r"up \d+s", "up Ns", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


@pytest.mark.usefixtures("swarm_record")
def test_snapshot_80x24(client: redis.Redis, state_dir: Path, namespace: str) -> None:
    """The whole screen at 80x24 as text, against the stored snapshot.

    Set ``TOP_UPDATE_SNAPSHOTS=1`` to rewrite it after a deliberate change.
    """
    keys = Keys(namespace)
    client.hset(keys.swarm, mapping={"session_id": SID, "level": "balanced"})
    _write_target(client, keys, "api-server", 300, 512, "conservative")
    # the controller's fields, as the runtime writes them
    cost = {"controller": "engaged", "gc_ms_per_s": "42.0", "pause_p99_ms": "3.2"}
    _write_target(client, keys, "batch-job", 470, 512, "aggressive", **cost)
    _write_target(client, keys, "tui-app", 90, 64, "emergency", controller="infeasible")
    shot: list[str] = []

    async def scenario(app: TopApp, pilot) -> None:  # type: ignore[no-untyped-def]
        await until(lambda: len(table_names(app)) == 3)
        await pilot.pause()
        shot.append(screen_text(app))

    run_app(TopApp(state_dir, period_s=0.1), scenario)
    got = _normalise(shot[0], namespace)
    assert len(got.splitlines()) == 24 and max(len(x) for x in got.splitlines()) <= 80
    if os.environ.get("TOP_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(got + "\n")
    assert got == SNAPSHOT.read_text().rstrip("\n")


def test_waits_for_a_swarm_then_shows_it(
    embedded: EmbeddedRedis, client: redis.Redis, state_dir: Path, namespace: str
) -> None:
    async def scenario(app: TopApp, pilot: object) -> None:
        await until(lambda: "no swarm is running" in screen_text(app))
        lock = SupervisorLock(state_dir)
        lock.acquire()
        try:
            info = SwarmInfo(os.getpid(), namespace, embedded.url, embedded=True, state="ready")
            write_info(state_dir, info)
            _write_target(client, Keys(namespace), "late-comer", 10, 100, "conservative")
            await until(lambda: table_names(app) == ["late-comer"])
        finally:
            lock.release()

    run_app(TopApp(state_dir, period_s=0.1), scenario)


@pytest.mark.slow
@pytest.mark.usefixtures("swarm_record")
def test_in_a_real_terminal(
    embedded: EmbeddedRedis, state_dir: Path, namespace: str, tmp_path: Path
) -> None:
    """``hivemind top`` in tmux as a user runs it: rows, its own row (it guards itself), q."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed (.ci/run installs it)")
    rt = runtime(embedded, namespace, "app-one", 512)
    sock = str(tmp_path / "tmux.sock")
    session = "hmtop"
    exe = str(Path(sys.executable).parent / "hivemind")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}

    def pane() -> str:
        return subprocess.run(
            [tmux, "-S", sock, "capture-pane", "-p", "-t", session],
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip

    try:
        subprocess.run(
            [tmux, "-S", sock, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
             f"{exe} top --state-dir {state_dir}; echo EXITED-$?; sleep 30"],
            check=True, timeout=10, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = pane()
            if "app-one" in text and "hivemind-top-" in text and "q quit" in text:
                break
            time.sleep(0.2)
        assert "app-one" in text and "hivemind-top-" in text, text
        assert "q quit" in text
        subprocess.run([tmux, "-S", sock, "send-keys", "-t", session, "q"], check=True, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "EXITED-0" not in (text := pane()):
            time.sleep(0.2)
        assert "EXITED-0" in text, text
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True, timeout=10)
        rt.stop()


@pytest.mark.slow
@pytest.mark.ray
def test_demo_uses_the_dashboard_in_a_terminal(tmp_path: Path) -> None:
    """``hivemind demo`` in tmux: its guarded run on the dashboard, then the summary."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed (.ci/run installs it)")
    sock, session = str(tmp_path / "tmux.sock"), "hmdemo"
    exe = str(Path(sys.executable).parent / "hivemind")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["HIVEMIND_STATE_DIR"] = str(tmp_path / ".hivemind")

    def pane() -> str:
        return subprocess.run(
            [tmux, "-S", sock, "capture-pane", "-p", "-t", session, "-S", "-80"],
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip

    try:
        subprocess.run(
            [tmux, "-S", sock, "new-session", "-d", "-s", session, "-x", "120", "-y", "30",
             f"cd {tmp_path} && {exe} demo --seconds 4 --target-mb 128; echo EXITED-$?; "
             "sleep 60"],
            check=True, timeout=10, env=env,
        )  # fmt: skip
        deadline, text, dashboard = time.monotonic() + 180, "", False
        while time.monotonic() < deadline and "EXITED-" not in text:
            text = pane()
            dashboard = dashboard or ("effect-" in text and "q quit" in text)
            time.sleep(0.2)
        assert dashboard, "the guarded run was not shown on the dashboard\n" + text
        assert "demo summary" in text and "EXITED-0" in text, text
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True, timeout=10)
