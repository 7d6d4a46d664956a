"""Carrying out actions inside a guarded process, each measured by RSS before and after.

Only the kinds in :class:`~hivemind.swarm.messages.ActionKind` run, with
arguments already validated by the message model; a user's own reclaim
actions run by the name they were registered under, never as code sent on
the wire. Nothing here raises: a failing action is reported ``ok=False``.
"""

from __future__ import annotations

import gc
import logging
import time

from hivemind.agents.emergency import emergency_optimize
from hivemind.agents.gc_profiles import apply_gc_profile
from hivemind.agents.memtools import current_rss_bytes, malloc_trim
from hivemind.agents.pool import trim_all_pools
from hivemind.agents.render_cache import evict_all_caches
from hivemind.swarm.messages import Action, ActionKind, ActionResult
from hivemind.swarm.target.planner import Reclaimer
from hivemind.swarm.target.reclaim import ReclaimRegistry

__all__ = ["apply_actions"]

log = logging.getLogger(__name__)


def _run_one(
    action: Action, registry: ReclaimRegistry, target_mb: float, reclaimer: Reclaimer | None
) -> None:
    kind = action.kind
    if kind is ActionKind.GC_PROFILE:
        apply_gc_profile(action.profile.value if action.profile else "balanced")
    elif kind is ActionKind.COLLECT:
        gc.collect(2 if action.generation is None else action.generation)
    elif kind is ActionKind.TRIM_POOLS:
        trim_all_pools(1.0 if action.fraction is None else action.fraction)
    elif kind is ActionKind.EVICT_CACHES:
        evict_all_caches(expired_only=action.fraction == 0.0)
    elif kind is ActionKind.MALLOC_TRIM:
        malloc_trim()
    elif kind is ActionKind.RECLAIM:
        if reclaimer is not None:  # a registered action or a discovered cache, guarded
            out = reclaimer.run(action.name or "")
            if not out.ok:
                raise RuntimeError(out.error)
            return
        fn = registry.get(action.name or "")
        if fn is None:
            raise LookupError(f"no reclaim action named {action.name!r}")
        fn()
    elif kind is ActionKind.EMERGENCY:
        if reclaimer is not None:  # everything not marked keep, best first, guarded
            reclaimer.reclaim(1 << 62, max_actions=16)
        else:
            for spec in registry.specs():
                if not spec.keep:
                    spec.fn()
        emergency_optimize(target_mb=target_mb)


def apply_actions(
    actions: tuple[Action, ...],
    registry: ReclaimRegistry,
    target_mb: float,
    reclaimer: Reclaimer | None = None,
) -> list[ActionResult]:
    """Run ``actions`` in order; return what each freed (RSS before minus after) and took."""
    results = []
    for action in actions:
        before = current_rss_bytes()
        t0 = time.perf_counter()
        error = ""
        try:
            _run_one(action, registry, target_mb, reclaimer)
        except Exception as exc:  # a user's reclaim action must not take the runtime down
            error = f"{type(exc).__name__}: {exc}"
            log.warning("hivemind: action %s failed: %s", action.kind.value, error)
        ms = (time.perf_counter() - t0) * 1000
        results.append(
            ActionResult(
                kind=action.kind,
                name=action.name or "",
                bytes_freed=before - current_rss_bytes(),
                duration_ms=ms,
                ok=not error,
                error=error[:256],
            )
        )
    return results
