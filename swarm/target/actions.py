"""Carrying out a verified command's actions inside a guarded process, each measured.

Actions arrive as the plain dicts :class:`~hivemind.swarm.target.envelope.CommandVerifier`
already checked (kind in the allowed list, arguments in range): no pydantic
here, so a command costs the guarded process no extra imports beyond what
an action itself needs. Pools and caches are only touched if the app
created some (their modules are then already loaded). A user's own reclaim
actions run by the name they were registered under, never as code sent on
the wire. Nothing here raises: a failing action is reported ``ok=False``.

The result dicts have exactly the fields of
:class:`hivemind.swarm.messages.ActionResult`.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping

from hivemind.agents.memtools import current_rss_bytes, malloc_trim
from hivemind.swarm.lazylog import get_logger
from hivemind.swarm.target.reclaim import ReclaimRegistry

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from typing import Any

    from hivemind.swarm.target.planner import Reclaimer

__all__ = ["apply_actions"]

log = get_logger(__name__)  # imports logging only to say something


def _evict(expired_only: bool) -> None:
    mod = sys.modules.get("hivemind.agents.render_cache")
    if mod is not None:  # no RenderCache was ever created otherwise
        mod.evict_all_caches(expired_only=expired_only)


def _trim(fraction: float) -> None:
    mod = sys.modules.get("hivemind.agents.pool")
    if mod is not None:
        mod.trim_all_pools(fraction)


def _run_one(
    action: Mapping[str, Any],
    registry: ReclaimRegistry,
    target_mb: float,
    set_profile: Callable[[str], None],
    reclaimer: Reclaimer | None,
) -> None:
    kind = action["kind"]
    fraction = action.get("fraction")
    name = action.get("name") or ""
    if kind == "gc_profile":
        set_profile(action.get("profile") or "balanced")
    elif kind == "collect":
        gen = action.get("generation")
        gc.collect(2 if gen is None else gen)
    elif kind == "trim_pools":
        _trim(1.0 if fraction is None else fraction)
    elif kind == "evict_caches":
        _evict(expired_only=fraction == 0.0)
    elif kind == "malloc_trim":
        malloc_trim()
    elif kind == "reclaim":
        if reclaimer is not None:  # a registered action or a discovered cache, guarded
            out = reclaimer.run(name)
            if not out.ok:
                raise RuntimeError(out.error)
            return
        fn = registry.get(name)
        if fn is None:
            raise LookupError(f"no reclaim action named {name!r}")
        fn()
    elif kind == "emergency":
        if reclaimer is not None:  # everything not marked keep, best first, guarded
            reclaimer.reclaim(1 << 62, max_actions=16)
        else:
            for spec in registry.specs():
                if not spec.keep:
                    spec.fn()
        from hivemind.agents.emergency import emergency_optimize

        emergency_optimize(target_mb=target_mb)


def apply_actions(
    actions: list[Mapping[str, Any]],
    registry: ReclaimRegistry,
    target_mb: float,
    set_profile: Callable[[str], None] | None = None,
    reclaimer: Reclaimer | None = None,
) -> list[dict[str, Any]]:
    """Run ``actions`` in order; return what each freed (RSS before minus after) and took.

    ``set_profile`` carries out ``gc_profile`` (the runtime hands it to its
    controller as a preset); by default the profile's thresholds are set.
    ``reclaimer`` runs ``reclaim``/``emergency`` through the planner when given.
    """
    if set_profile is None:
        from hivemind.agents.gc_profiles import apply_gc_profile

        set_profile = apply_gc_profile
    results = []
    for action in actions:
        before = current_rss_bytes()
        t0 = time.perf_counter()
        error = ""
        try:
            _run_one(action, registry, target_mb, set_profile, reclaimer)
        except Exception as exc:  # a user's reclaim action must not take the runtime down
            error = f"{type(exc).__name__}: {exc}"
            log.warning("hivemind: action %s failed: %s", action.get("kind"), error)
        results.append(
            {
                "kind": action["kind"],
                "name": action.get("name") or "",
                "bytes_freed": before - current_rss_bytes(),
                "duration_ms": (time.perf_counter() - t0) * 1000,
                "ok": not error,
                "error": error[:256],
            }
        )
    return results
