"""A guarded process's own reclaim actions, registered by name.

This is the extension point for "drop my app's image cache": subclass
:class:`ReclaimAction` (a class of no-op hooks, like dramatiq's
``Middleware``) or pass a plain callable, and register it on the runtime.
The swarm calls it by name under pressure; no code ever travels on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ReclaimAction", "ReclaimFn", "ReclaimRegistry"]


class ReclaimAction:
    """Extension point: subclass and override :meth:`reclaim` to free your app's memory.

    Register an instance (or a plain callable) with
    ``runtime.register_reclaim("drop-image-cache", action)``; the swarm
    calls it by name under pressure. Return the bytes you believe you freed,
    or ``None`` to let the runtime measure RSS.
    """

    def reclaim(self) -> int | None:
        return None


ReclaimFn = Callable[[], int | None]


class ReclaimRegistry:
    """The user's named reclaim actions, safe to change from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, ReclaimFn] = {}

    def register(self, name: str, action: ReclaimFn | ReclaimAction) -> None:
        fn = action.reclaim if isinstance(action, ReclaimAction) else action
        if not callable(fn):
            raise TypeError(f"reclaim action {name!r} is not callable")
        with self._lock:
            self._actions[name] = fn

    def unregister(self, name: str) -> bool:
        with self._lock:
            return self._actions.pop(name, None) is not None

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._actions))

    def get(self, name: str) -> ReclaimFn | None:
        with self._lock:
            return self._actions.get(name)
