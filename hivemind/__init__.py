"""hivemind: keep Python applications under a memory target with a swarm of Ray agents.

``import hivemind`` is cheap (no Ray, no Redis import); ``hivemind.attach()``
guards the current process. The subpackages are ``hivemind.swarm``
(substrate, CLI, runtime), ``hivemind.agents`` (the optimizer library and
agent actors), ``hivemind.coordinator`` (policy, sessions) and
``hivemind.hooks`` (claude-flow compatible hooks).
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "__version__",
    "attach",
    "explain",
    "keep",
    "reclaim_action",
    "reclaimable",
    "register_reclaim",
]

__version__ = "0.1.0"


def attach(*args: Any, **kwargs: Any) -> Any:
    """Guard this process; see :func:`hivemind.swarm.target.attach.attach`."""
    from hivemind.swarm.target.attach import attach as _attach

    return _attach(*args, **kwargs)


def register_reclaim(
    name: str, fn: Any, *, cost: float | None = None, keep: bool | None = None
) -> Any:
    """Offer ``fn`` (returns bytes freed or None) as a reclaim action with an expected cost.

    See :func:`hivemind.swarm.target.reclaim.register_reclaim`.
    """
    from hivemind.swarm.target.reclaim import register_reclaim as _register

    return _register(name, fn, cost=cost, keep=keep)


def reclaim_action(name: str | None = None, *, cost: float = 1.0, keep: bool = False) -> Any:
    """Decorator form of :func:`register_reclaim`."""
    from hivemind.swarm.target.reclaim import reclaim_action as _decorator

    return _decorator(name, cost=cost, keep=keep)


def reclaimable(
    cache_like: Any, name: str | None = None, *, cost: float = 0.5, keep: bool = False
) -> Any:
    """Let the guard clear a dict or ``cachetools`` cache the app owns; returns it."""
    from hivemind.swarm.target.reclaim import reclaimable as _reclaimable

    return _reclaimable(cache_like, name, cost=cost, keep=keep)


def keep(obj: Any) -> Any:
    """Mark an ``lru_cache`` (or cache object) never to be cleared; returns it (a decorator)."""
    from hivemind.swarm.target.discover import keep as _keep

    return _keep(obj)


def explain() -> str:
    """What the guard would find to reclaim in this process now, as text (no guard needed)."""
    from hivemind.swarm.target.planner import Reclaimer

    return Reclaimer().explain()
