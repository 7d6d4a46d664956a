"""Typed facades over the three worker agents' Ray actors.

Importing this module does not import Ray; creating an actor does. The
cores are plain Python (:mod:`~hivemind.agents.benchmarker_agent`,
:mod:`~hivemind.agents.optimizer_agents`).
"""

from __future__ import annotations

from hivemind.agents.benchmarker_agent import BenchmarkerCore
from hivemind.agents.optimizer_agents import GCOptimizerCore, WidgetOptimizerCore
from hivemind.swarm.facade import ActorFacade

__all__ = ["BenchmarkerAgent", "GCOptimizerAgent", "WidgetOptimizerAgent"]


class BenchmarkerAgent(ActorFacade):
    """Samples targets and the host; publishes pressure events."""

    core = BenchmarkerCore
    role = "benchmarker"


class GCOptimizerAgent(ActorFacade):
    """Turns GC-only decisions into signed commands."""

    core = GCOptimizerCore
    role = "gc_optimizer"


class WidgetOptimizerAgent(ActorFacade):
    """Turns pool, cache and reclaim decisions into signed commands."""

    core = WidgetOptimizerCore
    role = "widget_optimizer"
