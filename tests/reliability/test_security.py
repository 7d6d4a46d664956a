"""Security: forged commands refused and counted, the secret kept secret, a private state folder,
no TCP port, and nothing pickled on the wire.

The five basic forgeries (unsigned, wrong key, tampered, replayed, stale) are
in ``tests/swarm/test_runtime.py``; here are the rest (non-ASCII signature,
wrong target, from the future, a key-less target, a mixed barrage) and the
checks on a real ``swarm up --detach``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from hivemind.swarm.errors import StateFolderError
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Action, ActionKind, Command
from hivemind.swarm.paths import ensure_private_dir
from hivemind.swarm.redis.bus import peek_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis, pid_alive
from hivemind.swarm.seal import is_sealed
from hivemind.swarm.secret import read_secret
from hivemind.swarm.signing import sign
from hivemind.swarm.target.envelope import CommandVerifier
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig
from tests.conftest import wait_for

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
PROBE = (Action(kind=ActionKind.RECLAIM, name="probe"),)


def _runtime(url: str, ns: str, state: Path, key: bytes | None, name: str = "sec") -> Runtime:
    rt = Runtime(
        RuntimeConfig(
            name=name,
            target_mb=100_000,
            redis_url=url,
            namespace=ns,
            state_dir=state,
            key=key,
            local_gc=False,
        )
    ).start()
    assert wait_for(lambda: rt.connected, 5)
    return rt


@pytest.fixture
def guarded(embedded: EmbeddedRedis, namespace: str) -> Iterator[tuple[Runtime, list[int]]]:
    rt = _runtime(embedded.url, namespace, embedded.state_dir, read_secret(embedded.state_dir))
    ran: list[int] = []
    rt.register_reclaim("probe", lambda: ran.append(1) or None)
    try:
        yield rt, ran
    finally:
        rt.stop()


def test_non_ascii_signature_is_refused_not_an_error() -> None:
    """hmac.compare_digest raises TypeError on non-ASCII str; the verifier must not."""
    v = CommandVerifier(b"k" * 32, "t")
    cmd = Command(decision_id="d", target="t", actions=PROBE, sig="é" * 64)
    assert v.check(cmd.model_dump_json().encode())[0] == "bad_signature"


def test_verifier_refuses_wrong_target_future_and_keyless() -> None:
    key = b"k" * 32
    now = 1_000_000.0
    v = CommandVerifier(key, "t", clock=lambda: now)

    def raw(cmd: Command) -> bytes:
        return cmd.model_dump_json().encode()

    other = sign(Command(decision_id="d", target="other", actions=PROBE, ts=now), key)
    assert v.check(raw(other))[0] == "wrong_target"
    future = sign(Command(decision_id="d", target="t", actions=PROBE, ts=now + 120), key)
    assert v.check(raw(future))[0] == "stale"
    ok = sign(Command(decision_id="d", target="t", actions=PROBE, ts=now), key)
    assert CommandVerifier(None, "t", clock=lambda: now).check(raw(ok))[0] == "bad_signature"
    assert v.check(raw(ok))[0] is None
    assert v.check(raw(ok))[0] == "replayed"


def test_barrage_of_forgeries_runs_nothing_and_counts_all(
    guarded: tuple[Runtime, list[int]], client: redis.Redis, keys: Keys
) -> None:
    rt, ran = guarded
    key = read_secret(rt.config.state_dir)  # type: ignore[arg-type]
    good = sign(Command(decision_id="d", target="sec", actions=PROBE), key)
    raws: list[str] = []
    for i in range(50):
        base = Command(decision_id=f"d{i}", target="sec", actions=PROBE)
        raws.append(base.model_dump_json())  # unsigned
        raws.append(sign(base, os.urandom(32)).model_dump_json())  # wrong key
        tampered = json.loads(sign(base, key).model_dump_json())
        tampered["actions"] = [{"kind": "emergency"}]
        raws.append(json.dumps(tampered))
        raws.append(sign(base.model_copy(update={"ts": time.time() - 3600}), key).model_dump_json())
        raws.append(sign(base.model_copy(update={"target": "someone-else"}), key).model_dump_json())
        raws.append(base.model_copy(update={"sig": "ü" * 64}).model_dump_json())
    raws.append(good.model_dump_json())  # runs once ...
    raws += [good.model_dump_json()] * 20  # ... and its replays never
    pipe = client.pipeline(transaction=False)
    for raw in raws:
        pipe.publish(keys.cmd("sec"), raw)
    pipe.execute()
    forged = len(raws) - 1
    assert wait_for(lambda: rt.stats["refused"] == forged, 10), rt.stats
    time.sleep(0.2)
    assert ran == [1] and rt.stats["commands"] == 1
    assert rt.stats["internal_errors"] == 0
    assert int(client.hget(keys.counters, "refused") or 0) == forged
    per_reason = {
        k.decode(): int(v) for k, v in client.hgetall(keys.target_counters("sec")).items()
    }
    assert per_reason == {
        "refused": forged,
        "refused_unsigned": 50,
        "refused_bad_signature": 150,
        "refused_stale": 50,
        "refused_wrong_target": 50,
        "refused_replayed": 20,
    }


def test_state_folder_and_secret_modes(tmp_path: Path) -> None:
    state = tmp_path / ".hivemind"
    read_secret(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "secret").stat().st_mode) == 0o600
    (state / "secret").chmod(0o640)
    with pytest.raises(StateFolderError, match="readable by others"):
        read_secret(state)
    (state / "secret").chmod(0o600)
    state.chmod(0o777)
    with pytest.raises(StateFolderError, match="writable by other users"):
        ensure_private_dir(state)
    state.chmod(0o770)
    with pytest.raises(StateFolderError):
        ensure_private_dir(state)


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HIVEMIND, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}


def test_swarm_up_refuses_a_world_writable_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "open"
    state.mkdir()
    state.chmod(0o777)
    r = _cli("swarm", "up", "--detach", "--state-dir", str(state), env=_env())
    assert r.returncode == 1, r
    assert "writable by other users" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (state / "redis").exists(), "nothing was started"


def test_run_with_a_group_readable_secret_runs_the_app_but_refuses_commands(
    tmp_path: Path,
) -> None:
    state = tmp_path / ".hivemind"
    read_secret(state)
    (state / "secret").chmod(0o640)
    code = (
        "import hivemind.swarm.target.attach as r, time; time.sleep(0.3); "
        "rt = r.current_runtime(); print(rt is not None, rt.config.key is None)"
    )
    env = _env()
    r = subprocess.run(
        [HIVEMIND, "run", "--state-dir", str(state), "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r
    assert r.stdout.split() == ["True", "True"]
    assert "readable by others" in r.stderr
    # The key text itself is never printed.
    assert (state / "secret").read_text().strip() not in r.stderr + r.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_detached_swarm_keeps_the_secret_no_tcp_and_no_pickle(tmp_path: Path) -> None:
    """A real ``swarm up --detach`` with a guarded process: the secret appears in no
    output, log or ``swarm.json``; redis-server has no TCP socket; every message on
    every ``hm:{ns}:*`` channel is a JSON message model."""
    state = tmp_path / ".hivemind"
    ns = "sec" + os.urandom(3).hex()
    env = _env()
    up = _cli("swarm", "up", "--detach", "--state-dir", str(state), "-n", ns, env=env, timeout=180)
    app = None
    try:
        assert up.returncode == 0, up.stderr
        secret = (state / "secret").read_text().strip()
        info = json.loads((state / "swarm.json").read_text())
        redis_pid = info["redis_pid"]
        assert redis_pid and pid_alive(redis_pid)
        conns = psutil.Process(redis_pid).net_connections(kind="inet")
        assert conns == [], f"embedded redis-server has TCP/UDP sockets: {conns}"
        assert all(
            c.family.name == "AF_UNIX" for c in psutil.Process(redis_pid).net_connections("all")
        )

        watcher = connect(info["redis_url"])
        ps = watcher.pubsub(ignore_subscribe_messages=True)
        ps.psubscribe(f"hm:{ns}:*")
        leak = (
            "import time\nfrom hivemind.agents.render_cache import RenderCache\n"
            "c = RenderCache(max_size=100000, ttl_seconds=3600)\n"
            "for i in range(250):\n    c.set(i, str(i) * 262144)\n    time.sleep(0.01)\n"
        )
        app = subprocess.Popen(
            [
                HIVEMIND,
                "run",
                "--target-mb",
                "80",
                "--name",
                "leaky",
                "--state-dir",
                str(state),
                "--",
                sys.executable,
                "-c",
                leak,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (app.poll() is None or not seen.get("cmd")):
            msg = ps.get_message(timeout=0.2)
            if msg is None:
                continue
            channel = msg["channel"].decode()
            parsed = peek_message(msg["data"])  # raises on anything not a JSON message
            assert not msg["data"].startswith(b"\x80"), "pickle on the wire"
            kind = "cmd" if ":cmd:" in channel else channel.split(":")[2]
            if kind != "cmd":  # everything else that can lead to an action is sealed
                assert is_sealed(msg["data"]), (channel, msg["data"][:80])
            seen[kind] = seen.get(kind, 0) + 1
            assert parsed.v == 1
        app_out, app_err = app.communicate(timeout=30)
        assert app.returncode == 0, app_err
        assert {"samples", "events", "decisions", "cmd", "acks"} <= set(seen), seen
        ps.close()
        watcher.close()

        status = _cli("swarm", "status", "--json", "--state-dir", str(state), env=env)
        assert status.returncode == 0, status.stderr
        json.loads(status.stdout)
        down = _cli("swarm", "down", "--state-dir", str(state), env=env)
        assert down.returncode == 0, down.stderr
        texts = {
            "swarm up": up.stdout + up.stderr,
            "swarm status --json": status.stdout + status.stderr,
            "swarm down": down.stdout + down.stderr,
            "guarded app": app_out + app_err,
            "swarm.json": json.dumps(info),
            "swarm.log": (state / "swarm.log").read_text(errors="replace"),
            "redis.log": (state / "redis" / "redis.log").read_text(errors="replace"),
        }
        for where, text in texts.items():
            assert secret not in text, f"the HMAC key appears in {where}"
        print(f"SECURITY wire: {sum(seen.values())} messages, all JSON: {seen}")
    finally:
        if app is not None and app.poll() is None:
            app.kill()
            app.wait()
        if (state / "swarm.json").exists():
            _cli("swarm", "down", "--state-dir", str(state), env=env)
        EmbeddedRedis(state).stop()
