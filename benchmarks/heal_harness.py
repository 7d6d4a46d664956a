"""A real CLI swarm under fire: the harness behind bench_reliability and tests/reliability.

:class:`CliSwarm` starts ``hivemind swarm up --detach`` in a private state
folder, reads its pids (``swarm.json``, heartbeats, ``health.json``), kills
one of its processes with SIGKILL and measures how long until the swarm is
healthy again *by itself* (nothing here restarts anything).
:class:`Guarded` runs guarded processes (``hivemind run``) that leak
until the swarm reclaims them; :class:`HookFire` fires ``hivemind hooks
notify`` at a fixed rate and remembers which exited 0, so lost writes are
counted as rows missing from Redis. Every process started here is stopped
by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from hivemind.swarm.health import read_health
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import pid_alive
from hivemind.swarm.state import SwarmInfo, read_info

__all__ = ["ROLES", "CliSwarm", "Guarded", "HookFire", "kill"]

ROLES = ("coordinator", "benchmarker", "gc_optimizer", "widget_optimizer")
HEARTBEAT_S = 0.2
HIVEMIND = [sys.executable, "-c", "from hivemind.entry import main; main()"]
ROOT = Path(__file__).resolve().parents[1]

LEAKY = """
import os, sys, time
from hivemind.agents.render_cache import RenderCache
cache = RenderCache(max_size=100000, ttl_seconds=3600)
stop = sys.argv[1]
n = 0
while not os.path.exists(stop):
    cache.set(n, str(n % 10) * 65536)
    n += 1
    time.sleep(0.005)
print("done", n)
"""


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(ROOT)
    env["HIVEMIND_STATE_DIR"] = str(state)
    return env


class CliSwarm:
    """One ``hivemind swarm up --detach`` in ``root/.hivemind``, observed from outside."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.root = root
        self.state = root / ".hivemind"
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.env = _env(self.state)
        self.seen: set[int] = set()  # every pid the swarm ever recorded

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run ``hivemind ARGS`` against this swarm's state folder."""
        return subprocess.run(
            [*HIVEMIND, *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, cwd=self.root, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def up(self) -> float:
        """Start the swarm (fast heartbeats); return seconds until ``up`` returned."""
        t0 = time.monotonic()
        env = {"HIVEMIND_HEARTBEAT_S": str(HEARTBEAT_S)}
        r = subprocess.run(
            [*HIVEMIND, "swarm", "up", "--detach", "--namespace", self.namespace],
            env={**self.env, **env}, capture_output=True, text=True, timeout=300,
            cwd=self.root, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"swarm up failed: {r.stderr.strip()}")
        self.remember()
        return time.monotonic() - t0

    def info(self) -> SwarmInfo:
        info = read_info(self.state)
        if info is None:
            raise RuntimeError("no swarm.json")
        return info

    def remember(self) -> None:
        info = read_info(self.state)
        if info is not None:
            self.seen.update(info.pids())

    def client(self) -> redis.Redis:
        return connect(self.info().redis_url, timeout_s=1.0)

    def agents(self) -> dict[str, tuple[int, float]]:
        """role -> (pid, seconds since its last heartbeat), for the agents that beat."""
        out: dict[str, tuple[int, float]] = {}
        try:
            c = self.client()
        except Exception:
            return out
        try:
            now = time.time()
            for role in ROLES:
                beat = c.hgetall(self.keys.agent(f"{self.namespace}.{role}"))
                if b"pid" in beat:
                    out[role] = (int(beat[b"pid"]), now - float(beat[b"last_seen"]))
        except redis.RedisError:
            return {}
        finally:
            c.close()
        return out

    def redis_ok(self) -> bool:
        from hivemind.swarm.redis.server import _ping_socket

        info = read_info(self.state)
        if info is None or info.redis_pid is None or not pid_alive(info.redis_pid):
            return False
        return _ping_socket(Path(info.redis_url.removeprefix("unix://")), loading_ok=False)

    def healthy(self, *, not_pids: set[int] = frozenset()) -> bool:  # type: ignore[assignment]
        """Ready, every part alive and none of ``not_pids`` (the killed ones) in use."""
        info = read_info(self.state)
        if info is None or info.state != "ready" or not pid_alive(info.pid):
            return False
        if info.pid in not_pids or info.redis_pid in not_pids or not self.redis_ok():
            return False
        agents = self.agents()
        if len(agents) < len(ROLES):
            return False
        for pid, age in agents.values():
            if pid in not_pids or not pid_alive(pid) or age > 1.0 + 3 * HEARTBEAT_S:
                return False
        health = read_health(self.state)
        return health is not None and not health.down()

    def wait_healthy(self, not_pids: set[int], timeout_s: float, t0: float) -> float | None:
        """Seconds from ``t0`` until :meth:`healthy`, or None after ``timeout_s``."""
        while True:
            if self.healthy(not_pids=not_pids):
                self.remember()
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                return None
            time.sleep(0.02)

    def head_pids(self) -> dict[str, int]:
        """``gcs_server`` / ``raylet`` -> pid among the supervisor's Ray processes."""
        out: dict[str, int] = {}
        for pid in self.info().ray_pids:
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(pid).name()
                if name in ("gcs_server", "raylet"):
                    out[name] = pid
        return out

    def counter(self, field: str = "acks") -> int:
        c = self.client()
        try:
            return int(c.hget(self.keys.counters, field) or 0)
        finally:
            c.close()

    def down(self) -> tuple[subprocess.CompletedProcess[str], list[int]]:
        """``swarm down``; the result and the recorded pids still alive right after it."""
        self.remember()
        r = self.cli("swarm", "down", timeout=120)
        left = [p for p in self.seen if pid_alive(p)]
        return r, left

    def kill_leftovers(self) -> list[int]:
        """SIGKILL whatever the swarm recorded and is still alive (cleanup of last resort)."""
        self.remember()
        left = [p for p in self.seen if pid_alive(p)]
        for pid in left:
            kill(pid)
        return left


@dataclass
class Guarded:
    """``n`` guarded processes (``hivemind run``) leaking until ``stop_file`` appears."""

    swarm: CliSwarm
    n: int = 5
    target_mb: float = 120.0
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> None:
        app = self.swarm.root / "leaky.py"
        app.write_text(LEAKY)
        self.stop_file = self.swarm.root / "stop-guarded"
        for i in range(self.n):
            cmd = [*HIVEMIND, "run", "--target-mb", str(self.target_mb), "--name", f"g{i}",
                   "--", sys.executable, str(app), str(self.stop_file)]  # fmt: skip
            proc = subprocess.Popen(
                cmd, env=self.swarm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, cwd=self.swarm.root,
            )  # fmt: skip
            self.procs.append(proc)

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    def joined(self) -> int:
        """How many report to the swarm (a fresh target hash)."""
        try:
            c = self.swarm.client()
        except Exception:
            return 0
        try:
            now = time.time()
            n = 0
            for i in range(self.n):
                seen = c.hget(self.swarm.keys.target(f"g{i}"), "last_seen")
                n += bool(seen) and now - float(seen) < 2.0
            return n
        except redis.RedisError:
            return 0
        finally:
            c.close()

    def acked(self) -> int:
        """How many have applied at least one command of the swarm (are warm)."""
        try:
            c = self.swarm.client()
        except Exception:
            return 0
        try:
            keys = self.swarm.keys
            return sum(
                int(c.hget(keys.target_counters(f"g{i}"), "acks") or 0) > 0 for i in range(self.n)
            )
        except redis.RedisError:
            return 0
        finally:
            c.close()

    def stop(self) -> list[tuple[int | None, str]]:
        """Ask them to finish, then end any left, by pid; return (exit code, stderr)."""
        with contextlib.suppress(OSError):
            self.stop_file.touch()
        out = []
        for p in self.procs:
            try:
                _, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                for pid in _tree(p.pid)[::-1]:
                    kill(pid)
                _, err = p.communicate(timeout=10)
            out.append((p.returncode, err))
        return out


def _tree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class HookFire:
    """Fires ``hivemind hooks notify --strict`` at ``rate_hz`` from a thread."""

    def __init__(self, swarm: CliSwarm, session_id: str, rate_hz: float = 10.0) -> None:
        self.swarm = swarm
        self.session_id = session_id
        self.rate_hz = rate_hz
        self.ok: list[str] = []  # messages whose hook exited 0
        self.failed: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        running: list[tuple[str, subprocess.Popen[str]]] = []
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set() or running:
            now = time.monotonic()
            if not self._stop.is_set() and now >= next_at:
                n += 1
                msg = f"hk-{n}"
                cmd = [*HIVEMIND, "hooks", "notify", "--message", msg, "--session-id",
                       self.session_id, "--strict", "--no-stdin"]  # fmt: skip
                proc = subprocess.Popen(
                    cmd, env=self.swarm.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True, cwd=self.swarm.root, stdin=subprocess.DEVNULL,
                )  # fmt: skip
                running.append((msg, proc))
                next_at += 1.0 / self.rate_hz
            still = []
            for msg, p in running:
                if p.poll() is None:
                    still.append((msg, p))
                    continue
                err = p.stderr.read() if p.stderr else ""
                if p.returncode == 0:
                    self.ok.append(msg)
                else:
                    self.failed.append((msg, p.returncode, err.strip()[-300:]))
            running = still
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def stored(self) -> set[str]:
        """Messages stored in the session (rows in Redis)."""
        c = self.swarm.client()
        try:
            rows = c.xrange(self.swarm.keys.session_events(self.session_id))
        finally:
            c.close()
        return {json.loads(f[b"data"]).get("message", "") for _, f in rows}

    def lost(self) -> list[str]:
        """Hooks that exited 0 whose event is not in Redis."""
        stored = self.stored()
        return [m for m in self.ok if m not in stored]
