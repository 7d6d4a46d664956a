"""A small typed facade over each agent actor, so callers never write ``.remote()``.

Like ``ray.util.queue.Queue`` over its private actor: a subclass names the
plain-Python core class and its role; :meth:`ActorFacade.start` creates the
named, restartable actor in the ``hivemind`` Ray namespace and
:meth:`ActorFacade.lookup` finds it again from another driver.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Self

from hivemind.swarm.agent.base import AgentConfig, AgentCore
from hivemind.swarm.errors import NotRunningError, SwarmStartError

__all__ = ["MAX_RESTARTS", "RAY_NAMESPACE", "ActorFacade"]

RAY_NAMESPACE = "hivemind"
MAX_RESTARTS = 20


class ActorFacade:
    """Typed handle on one agent actor. Subclasses set ``core`` and ``role``."""

    core: ClassVar[type[AgentCore]]
    role: ClassVar[str]
    _remote_cls: ClassVar[Any] = None

    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name = name

    @classmethod
    def actor_name(cls, namespace: str) -> str:
        """The Ray actor name of this role in ``namespace``: ``{ns}.{role}``."""
        return f"{namespace}.{cls.role}"

    @classmethod
    def _remote(cls) -> Any:
        import ray

        if cls.__dict__.get("_remote_cls") is None:
            cls._remote_cls = ray.remote(cls.core)
        return cls._remote_cls

    @classmethod
    def start(
        cls, config: AgentConfig, *, name: str | None = None, scheduling_strategy: Any = None
    ) -> Self:
        """Create the actor (not yet waited for: call :meth:`ping` to wait).

        ``scheduling_strategy`` pins it (say to a node, with Ray's node affinity).
        """
        name = name or cls.actor_name(config.namespace)
        extra: dict[str, Any] = {}
        if scheduling_strategy is not None:
            extra["scheduling_strategy"] = scheduling_strategy
        handle = (
            cls._remote()
            .options(
                name=name,
                namespace=RAY_NAMESPACE,
                max_restarts=MAX_RESTARTS,
                max_task_retries=-1,
                num_cpus=0,
                **extra,
            )
            .remote(config, name)
        )
        return cls(handle, name)

    @classmethod
    def lookup(cls, namespace: str) -> Self:
        """Find the running actor of this role; :class:`NotRunningError` if none."""
        import ray

        name = cls.actor_name(namespace)
        try:
            return cls(ray.get_actor(name, namespace=RAY_NAMESPACE), name)
        except ValueError:
            raise NotRunningError(f"no {cls.role} actor named {name}") from None

    def call(self, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        """Call ``method`` on the actor and wait up to ``timeout_s`` for the result."""
        import ray

        try:
            return ray.get(getattr(self._handle, method).remote(*args), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise SwarmStartError(f"{self.name}.{method} did not answer in {timeout_s}s") from None
        except ray.exceptions.RayActorError as exc:
            raise SwarmStartError(f"{self.name} is not available: {exc}") from None

    def ping(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait for the actor to be up; return its name, pid, node, restarts."""
        result: dict[str, Any] = self.call("ping", timeout_s=timeout_s)
        return result

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the agent's loops, then end the actor for good (no restart)."""
        import ray

        with contextlib.suppress(SwarmStartError):
            self.call("stop", timeout_s=timeout_s)
        ray.kill(self._handle, no_restart=True)

    def kill(self, *, no_restart: bool = False) -> None:
        """Kill the actor's process as a crash would (restarts unless ``no_restart``)."""
        import ray

        ray.kill(self._handle, no_restart=no_restart)
