"""The whole swarm loop in this process, without Ray: the four agent cores and a runtime.

:class:`InProcessSwarm` starts the plain-Python agent cores (the very
classes the Ray actors wrap) against any Redis URL, plus optional target
runtimes, so the reliability tests drive the real subscribers with real
Redis pub/sub at full speed and can look inside them afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hivemind.agents.actors.benchmarker import BenchmarkerCore
from hivemind.agents.actors.optimizers import GCOptimizerCore, WidgetOptimizerCore
from hivemind.coordinator.coordinator import CoordinatorCore
from hivemind.swarm.agent.base import AgentConfig, AgentCore, remember_secret
from hivemind.swarm.keys import Keys
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig

__all__ = ["InProcessSwarm"]


@dataclass
class InProcessSwarm:
    """The four agent cores (and any runtimes) of one namespace, in this process."""

    url: str
    namespace: str
    secret: bytes
    state_dir: Path | None = None
    target_mb: float = 1536.0
    heartbeat_s: float = 1.0
    cores: dict[str, AgentCore] = field(default_factory=dict)
    runtimes: list[Runtime] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def config(self) -> AgentConfig:
        return AgentConfig(
            namespace=self.namespace,
            redis_url=self.url,
            target_mb=self.target_mb,
            heartbeat_s=self.heartbeat_s,
            secret_id=remember_secret(self.secret),
        )

    def start(self) -> InProcessSwarm:
        config = self.config()
        for cls in (CoordinatorCore, BenchmarkerCore, GCOptimizerCore, WidgetOptimizerCore):
            name = f"{self.namespace}.{cls.role}"
            self.cores[cls.role] = cls(config, name)
        return self

    def add_runtime(self, name: str, target_mb: float, sample_hz: float = 20.0) -> Runtime:
        rt = Runtime(
            RuntimeConfig(
                name=name,
                target_mb=target_mb,
                redis_url=self.url,
                namespace=self.namespace,
                state_dir=self.state_dir,
                key=self.secret,
                sample_hz=sample_hz,
                local_gc=False,  # the test process's own GC settings stay as they are
            )
        ).start()
        self.runtimes.append(rt)
        return rt

    @property
    def coordinator(self) -> CoordinatorCore:
        core = self.cores["coordinator"]
        assert isinstance(core, CoordinatorCore)
        return core

    @property
    def benchmarker(self) -> BenchmarkerCore:
        core = self.cores["benchmarker"]
        assert isinstance(core, BenchmarkerCore)
        return core

    def subscribed(self) -> bool:
        """True once every core's bus loop holds its subscription."""
        return all(c.sub is not None for c in self.cores.values()) and all(
            rt.connected for rt in self.runtimes
        )

    def dead_threads(self) -> list[str]:
        """Names of agent or runtime threads that are no longer running."""
        dead = [t.name for c in self.cores.values() for t in c._threads if not t.is_alive()]
        dead += [rt.name for rt in self.runtimes if rt._thread is None or not rt._thread.is_alive()]
        return dead

    def stop(self) -> None:
        for rt in self.runtimes:
            rt.stop()
        for core in self.cores.values():
            core.stop()
            core.redis.close()
