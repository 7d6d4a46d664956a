"""The three worker agents as Ray actors, each behind a typed facade.

Importing this module does not import Ray; creating an actor does. The
cores are plain Python subclasses of :class:`AgentCore`.
"""

from __future__ import annotations

from typing import ClassVar

from hivemind.swarm.agent_base import AgentCore, Role
from hivemind.swarm.facade import ActorFacade

__all__ = [
    "BenchmarkerAgent",
    "BenchmarkerCore",
    "GCOptimizerAgent",
    "GCOptimizerCore",
    "WidgetOptimizerAgent",
    "WidgetOptimizerCore",
]


class BenchmarkerCore(AgentCore):
    """Samples targets and the host and publishes pressure events."""

    role: ClassVar[Role] = "benchmarker"


class GCOptimizerCore(AgentCore):
    """Turns decisions into GC commands for targets."""

    role: ClassVar[Role] = "gc_optimizer"


class WidgetOptimizerCore(AgentCore):
    """Turns decisions into pool and cache reclaim commands for targets."""

    role: ClassVar[Role] = "widget_optimizer"


class BenchmarkerAgent(ActorFacade):
    core = BenchmarkerCore
    role = "benchmarker"


class GCOptimizerAgent(ActorFacade):
    core = GCOptimizerCore
    role = "gc_optimizer"


class WidgetOptimizerAgent(ActorFacade):
    core = WidgetOptimizerCore
    role = "widget_optimizer"
