"""Which Redis a hook (or a ``session`` command) talks to, and in which namespace.

In order: the running swarm's Redis and namespace (``swarm.json`` while its
supervisor holds ``swarm.lock``); else ``HIVEMIND_REDIS_URL`` (or the 0600
file ``HIVEMIND_REDIS_URL_FILE`` names); else the
embedded server of the state folder, leased for the duration of the block
(started if needed, stopped when its last user leaves). The namespace is
the swarm's, else ``HIVEMIND_NAMESPACE``, else ``default``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import UsageError
from hivemind.swarm.keys import validate_namespace
from hivemind.swarm.paths import default_state_dir, env_redis_url
from hivemind.swarm.state import SwarmInfo, running_swarm

__all__ = ["RedisTarget", "offline_target", "redis_target"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where to write: URL, namespace, and the running swarm if there is one."""

    url: str
    namespace: str
    state_dir: Path
    mode: Literal["swarm", "external", "embedded"]
    swarm: SwarmInfo | None = None


def _namespace(explicit: str | None) -> str:
    ns = explicit or env_str("namespace") or "default"
    try:
        return validate_namespace(ns)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def redis_target(
    state_dir: Path | None = None, *, namespace: str | None = None
) -> Iterator[RedisTarget]:
    """Yield the Redis to use; lease the embedded server when nothing else is up.

    ``namespace`` (a flag) wins over the running swarm's and the environment's.
    Raises :class:`~hivemind.swarm.errors.RedisUnavailableError` when the
    embedded server cannot start.
    """
    folder = (state_dir or default_state_dir()).resolve()
    info = running_swarm(folder)
    if info is not None:
        yield RedisTarget(info.redis_url, namespace or info.namespace, folder, "swarm", info)
        return
    ns = _namespace(namespace)
    url = env_redis_url()
    if url:
        yield RedisTarget(url, ns, folder, "external")
        return
    from hivemind.swarm.redis.server import EmbeddedRedis

    with EmbeddedRedis(folder).lease() as embedded_url:
        yield RedisTarget(embedded_url, ns, folder, "embedded")


def offline_target(folder: Path) -> tuple[str, str]:
    """``(namespace, swarm session id or "")`` a write would go to, without touching Redis."""
    info = running_swarm(folder)
    if info is not None:
        return info.namespace, info.session_id
    return _namespace(None), ""
