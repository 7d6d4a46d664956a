"""The ``swarm up`` process: Redis, Ray and the four agents, started and stopped in order.

:class:`Swarm` owns one swarm's lifetime. ``start()`` takes the state
folder's lock, brings up Redis (the embedded server, or connects to the
external URL), starts a local Ray (or joins ``--ray-address``), creates the
agent actors and waits for each to answer, then records ``swarm.json`` as
ready. ``stop()`` undoes it in reverse, leaving no process behind.
``python -m hivemind.swarm.lifecycle.supervisor`` runs one in the background for
``swarm up --detach`` (under its keeper, :mod:`hivemind.swarm.lifecycle.keeper`);
its settings come from ``HIVEMIND_*`` variables. While it runs, a
:class:`~hivemind.swarm.lifecycle.watch.Watcher` restarts what dies; when
the Ray head dies the supervisor ends its Ray processes and exits with
:data:`RESTART_EXIT` so the keeper starts it again with the same session.

Stopping is bounded, whatever state Ray is in: the main thread only waits
for a signal (the periodic :meth:`Swarm.tick`, which calls Ray, runs in its
own thread: :mod:`hivemind.swarm.lifecycle.runloop`), and :meth:`Swarm.stop`
gives Ray's part of the teardown :data:`STOP_RAY_S` before it ends the Ray
processes by pid instead. Ray's
calls to its GCS have no deadline of their own (``ray.nodes()`` and
``ray.shutdown()`` wait for ever on a GCS that is stopped, and up to
``gcs_rpc_server_reconnect_timeout_s``, 60 s, on one that is dead).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import redis

from hivemind.swarm.agent.base import AgentConfig
from hivemind.swarm.agent.facade import RAY_NAMESPACE, ActorFacade
from hivemind.swarm.env import env_str
from hivemind.swarm.errors import HivemindError, SwarmStartError
from hivemind.swarm.health import Health, remove_health, write_health
from hivemind.swarm.keys import Keys
from hivemind.swarm.lifecycle.placement import BenchmarkerPlacement
from hivemind.swarm.lifecycle.ray_head import RayHead
from hivemind.swarm.lifecycle.runloop import bounded, exit_now, run_until_signalled
from hivemind.swarm.lifecycle.watch import Watcher, actor_role, load_health, reap
from hivemind.swarm.paths import write_private_file
from hivemind.swarm.procs import start_ticks
from hivemind.swarm.redis.connection import connect, strip_password
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import (
    AGENT_SECRET_FILE,
    REDIS_URL_FILE,
    SECRET_FILE,
    fingerprint,
    load_secret,
    read_node_file,
)
from hivemind.swarm.settings import Settings
from hivemind.swarm.state import SupervisorLock, SwarmInfo, remove_info, write_info

__all__ = [
    "RESTART_EXIT",
    "STOP_RAY_S",
    "Swarm",
    "agent_facades",
    "exit_now",
    "run_until_signalled",
    "under_keeper",
]

log = logging.getLogger(__name__)

RESTART_EXIT = 75  # EX_TEMPFAIL: "start me again" (the keeper does, with the same session)
STOP_RAY_S = 15.0  # Ray's part of an orderly stop; past it Ray's processes are ended by pid


def under_keeper() -> bool:
    """True when this process is the supervisor child of a keeper (``swarm up --detach``)."""
    return env_str("keeper_pid") == str(os.getppid())


def agent_facades() -> list[type[ActorFacade]]:
    """The four agent roles, in start order."""
    from hivemind.agents.actors.facades import (
        BenchmarkerAgent,
        GCOptimizerAgent,
        WidgetOptimizerAgent,
    )
    from hivemind.coordinator.coordinator import Coordinator

    return [Coordinator, BenchmarkerAgent, GCOptimizerAgent, WidgetOptimizerAgent]


class Swarm:
    """One running swarm. Use as ``with Swarm(settings) as swarm: ...``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.lock = SupervisorLock(settings.state_dir)
        self.embedded: EmbeddedRedis | None = None
        self.redis: redis.Redis | None = None
        self.redis_url = ""
        self.agents: list[ActorFacade] = []
        self.placement: BenchmarkerPlacement | None = None
        self._placed = 0.0
        self.info: SwarmInfo | None = None
        self._ray_started = False
        self.ray_head: RayHead | None = None
        self._lease: contextlib.ExitStack | None = None
        self._head: dict[str, int] = {}
        self._pings: dict[str, int] = {}
        self._metrics: Any = None
        self.session_id = settings.session_id or ""
        self.session_created = False
        self.watcher: Watcher | None = None
        self.head_lost = threading.Event()
        self.head_lost_reason = ""
        self.ray_abandoned = False  # Ray did not stop in time: its processes were killed
        self._restart_of = env_str("restart_reason") or ""

    # --- lifecycle --------------------------------------------------------
    def __enter__(self) -> Swarm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bring everything up; on any failure, tear down what was started and raise.

        Under a keeper the keeper holds the state folder's lock for the
        supervisor (so the swarm counts as running while it is restarted).
        """
        if not under_keeper():
            self.lock.acquire()
        try:
            self._start_redis()
            self._start_ray()
            self._start_agents()
            if self.ray_head is not None:
                self.ray_head.seal()
            self._start_metrics()
        except BaseException:
            self.stop()
            raise
        assert self.info is not None
        self.info.state = "ready"
        pings = self._pings
        self.info.ray_pids = [*self.ray_head_pids().values(), *pings.values()]
        write_info(self.settings.state_dir, self.info)
        assert self.redis is not None
        self.redis.hset(self.keys.swarm, "state", "ready")
        self.replay_journal()
        self._start_watcher(pings)

    def stop(self) -> None:
        """Stop agents, Ray and the embedded Redis; safe to call more than once."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.info is not None:
            self.info.state = "stopping"
            with contextlib.suppress(OSError):
                write_info(self.settings.state_dir, self.info)
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        if (self.agents or self._ray_started) and not bounded(
            self._stop_ray, STOP_RAY_S, "hm-stop-ray"
        ):
            # A Ray call that never returns (a wedged or dead GCS): end by pid what we started.
            log.warning("Ray did not stop within %.0fs; ending its processes by pid", STOP_RAY_S)
            self.ray_abandoned = True
            self.abandon_ray()
        self.agents = []
        self.placement = None
        self._ray_started = False
        if self.ray_head is not None:
            self.ray_head.stop()
            self.ray_head = None
        for name in (REDIS_URL_FILE, AGENT_SECRET_FILE):
            with contextlib.suppress(OSError):
                (self.settings.state_dir / name).unlink()
        if self.redis is not None:
            with contextlib.suppress(redis.RedisError):
                self.redis.hset(self.keys.swarm, "state", "stopped")
                self.redis.delete(self.keys.agent_restarts)
            self.redis.close()
            self.redis = None
        if self._lease is not None:
            self._lease.close()  # stops the embedded server unless a hook still uses it
            self._lease = None
        self.embedded = None
        if self.info is not None:
            remove_info(self.settings.state_dir)
            remove_health(self.settings.state_dir)
            self.info = None
        self.lock.release()

    def _stop_ray(self) -> None:
        """The agents (each call bounded), then this driver's Ray connection."""
        for agent in reversed(self.agents):
            try:
                agent.stop()
            except Exception as exc:  # keep tearing down the rest
                log.warning("stopping %s failed: %s", agent.name, exc)
        if self._ray_started:
            import ray

            ray.shutdown()

    # --- steps ------------------------------------------------------------
    def _start_redis(self) -> None:
        s = self.settings
        redis_pid: int | None = None
        if s.redis_url is None:
            self.embedded = EmbeddedRedis(s.state_dir)
            self._lease = contextlib.ExitStack()
            self.redis_url = self._lease.enter_context(self.embedded.lease())
            redis_pid = self.embedded.pid()
        else:
            self.redis_url = s.redis_url
        self.redis = connect(self.redis_url)
        from hivemind.coordinator.sessions.recorder import SessionStore

        store = SessionStore(self.redis, self.keys, maxlen=s.stream_maxlen)
        self.session_id, self.session_created = store.ensure(
            s.session_id, {"source": "swarm", "namespace": s.namespace}
        )
        self.info = SwarmInfo(
            pid=_own_pid(),
            pid_start=start_ticks(_own_pid()),
            namespace=s.namespace,
            redis_url=self.redis_url,
            embedded=s.embedded,
            ray_address=s.ray_address,
            session_id=self.session_id,
            target_mb=s.target_mb,
            redis_pid=redis_pid,
            keeper_pid=os.getppid() if under_keeper() else None,
        )
        write_info(s.state_dir, self.info)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.swarm)
        if not self._restart_of:  # a restart by the keeper keeps counting
            pipe.delete(self.keys.agent_restarts, self.keys.restarts)
        pipe.hset(
            self.keys.swarm,
            mapping={
                "pid": self.info.pid,
                "state": "starting",
                "level": "conservative",
                "session_id": self.session_id,
                "target_mb": s.target_mb,
                "embedded": int(s.embedded),
                "started_at": self.info.started_at,
            },
        )
        pipe.execute()

    def _start_ray(self) -> None:
        s = self.settings
        ray_mod = sys.modules.get("ray")
        if ray_mod is not None and ray_mod.is_initialized():
            return  # a driver that already joined Ray (tests, notebooks) keeps its own
        address = s.ray_address
        if not address:
            # Our own head: loopback only, token auth, no dashboard/monitors (ray_head.py).
            # Started before `import ray`: Ray reads the loopback switch at import.
            self.ray_head = RayHead(
                s.state_dir, object_store_mb=s.ray_object_store_mb, api_server=s.ray_api_server
            )
            address = self.ray_head.start()
        import ray

        kwargs: dict[str, Any] = {
            "namespace": RAY_NAMESPACE,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            where = s.ray_address or "a local Ray"
            raise SwarmStartError(f"cannot start {where}: {exc}".splitlines()[0]) from None
        self._ray_started = True
        heads = self.ray_head_pids()
        # Watched: the two a swarm cannot live without (the agents of the raylet die with it).
        self._head = {k: v for k, v in heads.items() if k in ("gcs_server", "raylet")}
        if self.info is not None and heads:  # recorded now: a crash before ready leaves none
            self.info.ray_pids = list(heads.values())
            write_info(s.state_dir, self.info)

    def ray_head_pids(self) -> dict[str, int]:
        """The Ray head processes this swarm started, by role (empty when it joined a cluster)."""
        return self.ray_head.pids() if self.ray_head is not None else {}

    @property
    def metrics_url(self) -> str:
        """Where Prometheus scrapes this swarm ("" without ``--metrics-port``)."""
        return str(self._metrics.url) if self._metrics is not None else ""

    def _start_metrics(self) -> None:
        s = self.settings
        if s.metrics_port is None:
            return
        from hivemind.swarm.observe.metrics import start_metrics_server

        self._metrics = start_metrics_server(
            self.redis_url, s.namespace, s.metrics_port, host=s.metrics_host
        )
        assert self.redis is not None
        self.redis.hset(self.keys.swarm, "metrics_url", self._metrics.url)

    def agent_config(self) -> AgentConfig:
        """The config every agent actor is created with."""
        s = self.settings
        return AgentConfig(
            namespace=s.namespace,
            redis_url=strip_password(self.redis_url),
            target_mb=s.target_mb,
            heartbeat_s=s.heartbeat_s,
            session_id=self.session_id,
            stream_maxlen=s.stream_maxlen,
            sample_hz=s.sample_hz,
            state_dir=str(s.state_dir),
            secret_id=fingerprint(load_secret(s)),
        )

    def _start_agents(self) -> None:
        config = self.agent_config()
        state = self.settings.state_dir
        # Secrets reach the agents through 0600 files in the state folder, never through Ray.
        if config.redis_url != self.redis_url:
            write_private_file(state / REDIS_URL_FILE, self.redis_url)
        key = load_secret(self.settings)
        if read_node_file(state / SECRET_FILE) != key.decode():
            write_private_file(state / AGENT_SECRET_FILE, key.decode())
        others = [f.start(config) for f in agent_facades() if f.role != "benchmarker"]
        from hivemind.agents.actors.facades import BenchmarkerAgent

        assert self.redis is not None
        self.placement = BenchmarkerPlacement(
            BenchmarkerAgent, config, self.redis, per_node=self.settings.benchmarkers_per_node
        )
        self.placement.reconcile(timeout_s=120.0)  # one (or per_node) on every Ray node
        self.agents = [others[0], *self.placement.agents.values(), *others[1:]]
        here = socket.gethostname()
        for agent in self.agents:
            info = agent.ping(timeout_s=120.0)
            if info.get("host", info.get("node")) == here:  # a pid elsewhere is not ours to watch
                self._pings[agent.name] = int(info["pid"])

    # --- healing ------------------------------------------------------------
    def _start_watcher(self, actor_pids: dict[str, int]) -> None:
        health = load_health(self.settings.state_dir, carry=bool(self._restart_of))
        self.watcher = Watcher(self, self._on_head_lost, health=health)
        if self._restart_of:
            # The keeper started us again: that is the supervisor's (and, when the
            # Ray head died, the head's) restart; count it once, here.
            part = "ray_head" if self._restart_of.startswith("Ray ") else "supervisor"
            health.mark_down(part, self._restart_of)
            down_s = health.mark_up(part, os.getpid(), restarted=True)
            if part == "ray_head":
                health.mark_up("supervisor", os.getpid(), restarted=False)
            write_health(self.settings.state_dir, health)
            self.record_restart(
                part, health.part(part).restarts, self._restart_of, down_s, os.getpid()
            )
            self._mark_rest_up(health, actor_pids)
        self.watcher.start(self._head, actor_pids)

    def _mark_rest_up(self, health: Health, actor_pids: dict[str, int]) -> None:
        """After a restart, whatever the old supervisor last saw down is up again here.

        (It may have died of something else than what it saw: a Ray head it
        saw go would otherwise stay ``down`` in ``health.json`` for good.)
        """
        pids: dict[str, int | None] = {actor_role(n): p for n, p in actor_pids.items()}
        pids["ray_head"] = self._head.get("raylet")
        pids["redis"] = self.info.redis_pid if self.info is not None else None
        for name, part in list(health.down().items()):
            down_s = health.mark_up(name, pids.get(name), restarted=True)
            write_health(self.settings.state_dir, health)
            self.record_restart(
                name, health.part(name).restarts, part.reason, down_s, pids.get(name)
            )

    def _on_head_lost(self, reason: str) -> None:
        self.head_lost_reason = reason
        self.head_lost.set()

    def record_restart(
        self, component: str, count: int, reason: str, down_s: float, pid: int | None
    ) -> None:
        """Count a restart in Redis and record it as a ``restart`` event in the session."""
        if self.redis is None:
            return
        from hivemind.coordinator.sessions.recorder import SessionStore

        try:
            self.redis.hset(self.keys.restarts, component, count)
            if self.session_id:
                SessionStore(self.redis, self.keys, maxlen=self.settings.stream_maxlen).append(
                    self.session_id,
                    "restart",
                    {
                        "component": component,
                        "reason": reason,
                        "down_s": round(down_s, 3),
                        "pid": pid,
                        "restarts": count,
                    },
                )
        except redis.RedisError as exc:
            log.warning("recording the %s restart failed: %s", component, exc)

    def replay_journal(self) -> None:
        """Replay the hooks' journal (events written while Redis was away) into Redis."""
        from hivemind.hooks.journal import replay_into

        try:
            result = replay_into(self.settings.state_dir, self.redis_url)
        except Exception as exc:  # never fatal: the next hook replays it
            log.warning("replaying the hooks journal failed: %s", exc)
            return
        if result.replayed or result.torn:
            log.info("hooks journal: %s", result.summary())

    def abandon_ray(self) -> None:
        """The Ray head died: end every Ray process of this swarm by pid, without Ray's API.

        Ray's own shutdown cannot run against a dead head (it may hang or
        abort the process); the actors, whose raylet is gone, would live on.
        """
        import psutil

        if self.watcher is not None:
            self.watcher.stop()
        pids = [*self._pings.values(), *self.ray_head_pids().values(), *self._head.values()]
        for pid in list(pids):
            with contextlib.suppress(psutil.Error):
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        for pid in dict.fromkeys(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        for pid in pids:
            reap(pid)
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
                reap(pid)
        if self.ray_head is not None:
            self.ray_head.stop()  # by pid, whatever is left of the head
            self.ray_head = None
        self.agents = []
        self._ray_started = False

    def recreate_agent(self, agent: ActorFacade) -> ActorFacade:
        """Create ``agent``'s actor again under its name (a benchmarker on its node)."""
        if self.placement is not None and agent.name in self.placement.shards:
            return self.placement.recreate(agent.name)
        return type(agent).start(self.agent_config(), name=agent.name)

    def tick(self) -> None:
        """Called by the supervisor's loop: a node that joined gets its benchmarker.

        At most every 2 s; a failure is logged, never raised (the loop goes on).
        """
        if self.placement is None or time.monotonic() - self._placed < 2.0:
            return
        self._placed = time.monotonic()
        try:
            if self.placement.reconcile():
                bench = set(self.placement.agents.values())
                self.agents = [a for a in self.agents if a.role != "benchmarker"]
                self.agents[1:1] = list(bench)
                log.info("benchmarkers: %s", self.placement.describe())
        except Exception as exc:  # a node coming or going mid-call: try again next tick
            log.warning("placing benchmarkers failed: %s", exc)


def _own_pid() -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    from hivemind.swarm.redis.server import pid_alive

    return pid_alive(pid)


def stop_after_head_loss(swarm: Swarm) -> str:
    """End a swarm whose Ray head died (no Ray API calls); return the one line that says why."""
    swarm.abandon_ray()
    swarm.stop()
    return f"swarm stopped: {swarm.head_lost_reason}"


def main() -> int:
    """Background supervisor entry point (``swarm up --detach`` spawns it)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from hivemind.swarm.settings import load_settings

    try:
        settings = load_settings()
        swarm = Swarm(settings)
        swarm.start()
    except HivemindError as exc:
        print(f"hivemind: {exc}", file=sys.stderr)
        return exc.exit_code
    log.info("swarm ready (namespace %s, session %s)", settings.namespace, swarm.session_id)
    try:
        run_until_signalled(swarm, threading.Event(), tick=swarm.tick)
    except BaseException:
        swarm.stop()
        raise
    if swarm.head_lost.is_set():
        reason = swarm.head_lost_reason
        if under_keeper():
            # Leave Redis running (clients keep their data and reconnect); end Ray
            # by pid; the keeper starts a new supervisor on the same session.
            swarm.abandon_ray()
            if swarm.info is not None:
                swarm.info.state = "restarting"
                with contextlib.suppress(OSError):
                    write_info(settings.state_dir, swarm.info)
            print(f"hivemind: {reason}; restarting the swarm", file=sys.stderr, flush=True)
            exit_now(RESTART_EXIT)  # not sys.exit: Ray's atexit hooks must not run now
        print(f"hivemind: {stop_after_head_loss(swarm)}", file=sys.stderr, flush=True)
        exit_now(1)
    swarm.stop()
    log.info("swarm stopped%s", " (Ray's processes ended by pid)" if swarm.ray_abandoned else "")
    exit_now(0)  # bounded: no atexit hook may wait on Ray now


if __name__ == "__main__":
    sys.exit(main())
