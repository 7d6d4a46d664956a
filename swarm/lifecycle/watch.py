"""The supervisor's watcher: notices what died and brings it back, without a user.

:class:`Watcher` runs one daemon thread in the supervisor. Ten times a
second it checks, by pid, everything the supervisor started:

- the embedded ``redis-server``: when it died (or stopped answering for
  5 s) the zombie is reaped and a new server is started at once on the same
  socket; it replays its AOF, the agents' and guarded processes' clients
  reconnect by themselves, and the hooks' journal is replayed into it;
- the Ray head (GCS server and raylet): when either is gone the swarm
  cannot go on in this process; the watcher calls ``on_head_lost`` and the
  supervisor hands over to its keeper, which starts it again with the same
  session (see :mod:`hivemind.swarm.lifecycle.keeper`);
- the four agent actors: Ray restarts a killed actor (``max_restarts``); the
  watcher sees the old pid die and the new one heartbeat, and recreates
  the actor itself if Ray has not brought it back within 10 s.

Every restart is counted in ``health.json`` (read by ``swarm status`` even
while Redis is down), in the ``hm:{ns}:restarts`` hash (Prometheus:
``hivemind_restarts_total{component}``), and recorded as a ``restart``
event in the swarm's session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from hivemind.swarm.health import Health, read_health, write_health
from hivemind.swarm.redis.server import pid_alive
from hivemind.swarm.state import write_info

if TYPE_CHECKING:
    from hivemind.swarm.lifecycle.supervisor import Swarm

__all__ = [
    "ACTOR_RECREATE_S",
    "REDIS_HUNG_S",
    "Watcher",
    "actor_role",
    "load_health",
    "reap",
]

log = logging.getLogger(__name__)

ACTOR_RECREATE_S = 10.0  # Ray restarts a dead actor itself; past this we recreate it
REDIS_HUNG_S = 5.0  # a live redis-server that answers no PING this long is killed


def reap(pid: int | None) -> None:
    """Collect ``pid``'s exit status if it is our child and has exited (no zombie left)."""
    if pid is None:
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class Watcher:
    """Watches one :class:`~hivemind.swarm.lifecycle.supervisor.Swarm` and heals it.

    ``on_head_lost(reason)`` is called (once) from the watcher thread when
    the Ray head died; the supervisor decides what to do with the swarm.
    """

    def __init__(
        self,
        swarm: Swarm,
        on_head_lost: Callable[[str], None],
        *,
        interval_s: float = 0.1,
        health: Health | None = None,
    ) -> None:
        self.swarm = swarm
        self.state_dir: Path = swarm.settings.state_dir
        self.on_head_lost = on_head_lost
        self.interval_s = interval_s
        self.health = health or Health()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._head: dict[str, int] = {}
        self._head_lost = False
        self._actor_pids: dict[str, int] = {}
        self._last_actor_check = 0.0
        self._redis_silent_since: float | None = None
        self._last_redis_ping = 0.0

    # --- lifecycle --------------------------------------------------------
    def start(self, head: dict[str, int], actor_pids: dict[str, int]) -> None:
        """Start watching ``head`` (name -> pid) and the actors (name -> pid)."""
        self._head = dict(head)
        self._actor_pids = dict(actor_pids)
        h = self.health
        if self.swarm.embedded is not None:
            h.part("redis").pid = self.swarm.info.redis_pid if self.swarm.info else None
        h.part("ray_head").pid = head.get("raylet")
        for name, pid in actor_pids.items():
            h.part(actor_role(name)).pid = pid
        h.part("supervisor").pid = os.getpid()
        self._save()
        self._thread = threading.Thread(target=self._run, name="hm-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before an orderly shutdown, so nothing is restarted meanwhile)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive anything it watches
                log.exception("watcher: check failed")

    def check_once(self) -> None:
        """One round of checks (the thread calls this every ``interval_s``)."""
        if self.swarm.embedded is not None:
            self._check_redis()
        if not self._head_lost:
            self._check_head()
        now = time.monotonic()
        if now - self._last_actor_check >= 0.25 and not self._head_lost:
            self._last_actor_check = now
            self._check_actors()
            _reap_children()

    # --- redis ------------------------------------------------------------
    def _check_redis(self) -> None:
        sw = self.swarm
        assert sw.embedded is not None and sw.info is not None
        pid = sw.info.redis_pid
        if pid is not None and pid_alive(pid):
            if not self._redis_hung(pid):
                return
            log.warning("watcher: redis-server %d answers no PING for %.0fs; killing it", pid,
                        REDIS_HUNG_S)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            reason = f"redis-server {pid} hung"
        else:
            reason = f"redis-server {pid} exited"
        reap(pid)
        t0 = time.monotonic()
        with self._lock:
            self.health.mark_down("redis", reason)
            self._save()
        log.warning("watcher: %s; restarting it", reason)
        from hivemind.swarm.errors import RedisUnavailableError

        try:
            new_pid, _ = sw.embedded.start()
        except RedisUnavailableError as exc:
            log.error("watcher: restarting redis-server failed: %s", exc)
            time.sleep(0.5)
            return
        self._redis_silent_since = None
        took = time.monotonic() - t0
        sw.info.redis_pid = new_pid
        with contextlib.suppress(OSError):
            write_info(self.state_dir, sw.info)
        log.warning("watcher: redis-server back as pid %d in %.2fs (AOF replayed)", new_pid, took)
        self._restarted("redis", new_pid, reason)
        sw.replay_journal()

    def _redis_hung(self, pid: int) -> bool:
        now = time.monotonic()
        if now - self._last_redis_ping < 0.5:
            return False
        self._last_redis_ping = now
        assert self.swarm.embedded is not None
        if _answers(self.swarm.embedded.socket_path, timeout_s=1.0):
            self._redis_silent_since = None
            return False
        if self._redis_silent_since is None:
            self._redis_silent_since = now
        return now - self._redis_silent_since >= REDIS_HUNG_S

    # --- ray head ---------------------------------------------------------
    def _check_head(self) -> None:
        for kind, pid in self._head.items():
            if pid_alive(pid):
                continue
            reap(pid)
            reason = f"Ray {kind} (pid {pid}) exited"
            self._head_lost = True
            with self._lock:
                self.health.mark_down("ray_head", reason)
                self._save()
            log.error("watcher: %s; the swarm must be restarted", reason)
            self.on_head_lost(reason)
            return

    # --- actors -----------------------------------------------------------
    def _check_actors(self) -> None:
        sw = self.swarm
        if sw.redis is None:
            return
        for agent in list(sw.agents):
            role = actor_role(agent.name)
            old = self._actor_pids.get(agent.name)
            part = self.health.part(role)
            if part.state == "up":
                if old is None or pid_alive(old):
                    continue
                with self._lock:
                    self.health.mark_down(role, f"{role} actor (pid {old}) exited")
                    self._save()
                log.warning("watcher: %s actor pid %d exited; Ray restarts it", role, old)
            new = self._heartbeat_pid(agent.name)
            if new is not None and new != old and pid_alive(new):
                self._actor_pids[agent.name] = new
                self._restarted(role, new, part.reason)
            elif time.time() - part.since > ACTOR_RECREATE_S:
                self._recreate(agent, role)

    def _heartbeat_pid(self, name: str) -> int | None:
        assert self.swarm.redis is not None
        try:
            raw = self.swarm.redis.hget(self.swarm.keys.agent(name), "pid")
        except redis.RedisError:
            return None
        return int(raw) if raw else None

    def _recreate(self, agent: Any, role: str) -> None:
        """Ray did not bring the actor back: end whatever is left and create it again."""
        sw = self.swarm
        log.warning("watcher: %s not back after %.0fs; recreating it", role, ACTOR_RECREATE_S)
        with contextlib.suppress(Exception):
            agent.kill(no_restart=True)
        try:
            fresh = sw.recreate_agent(agent)
            info = fresh.ping(timeout_s=30.0)
        except Exception as exc:
            log.error("watcher: recreating %s failed: %s", role, exc)
            self.health.part(role).since = time.time()  # try again later
            return
        sw.agents[sw.agents.index(agent)] = fresh
        self._actor_pids[fresh.name] = int(info["pid"])
        self._restarted(role, int(info["pid"]), "recreated by the supervisor")

    # --- bookkeeping ------------------------------------------------------
    def _restarted(self, component: str, pid: int | None, reason: str) -> None:
        with self._lock:
            down_s = self.health.mark_up(component, pid, restarted=True)
            count = self.health.part(component).restarts
            self._save()
        log.warning("watcher: %s back (pid %s) after %.2fs down", component, pid, down_s)
        self.swarm.record_restart(component, count, reason, down_s, pid)

    def _save(self) -> None:
        write_health(self.state_dir, self.health)


def _reap_children() -> None:
    """Collect every exited child: the supervisor is the subreaper of Ray's daemons,
    so their orphaned workers end up here and must not stay zombies."""
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _answers(path: Path, timeout_s: float) -> bool:
    """True if the server on ``path`` answers a PING at all (an error reply such as
    ``-MISCONF`` or ``-LOADING`` is an answer: alive, just unwell)."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return bool(sock.recv(64))
    except OSError:
        return False


def actor_role(actor_name: str) -> str:
    """``ns.benchmarker`` and the extra shards ``ns.benchmarker.1``... are benchmarkers."""
    head, _, last = actor_name.rpartition(".")
    return head.rpartition(".")[2] if last.isdigit() else last


def load_health(state_dir: Path, *, carry: bool) -> Health:
    """The health to start from: the recorded one when ``carry`` (a restart), else fresh."""
    if carry:
        found = read_health(state_dir)
        if found is not None:
            found.stopped_reason = ""
            return found
    return Health()
