"""Typed facades over the three worker agents' Ray actors.

Importing this module does not import Ray; creating an actor does. The
cores are plain Python (:mod:`~hivemind.agents.actors.benchmarker`,
:mod:`~hivemind.agents.actors.optimizers`).
"""

from __future__ import annotations

from hivemind.agents.actors.benchmarker import BenchmarkerCore
from hivemind.agents.actors.optimizers import GCOptimizerCore, WidgetOptimizerCore
from hivemind.swarm.agent.facade import ActorFacade

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
