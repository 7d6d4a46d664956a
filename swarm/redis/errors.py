"""The errors of the minimal Redis client (:mod:`hivemind.swarm.redis.resp`), on their own.

Here so that code can catch them without importing the client, its
``socket`` and ``hiredis``: the runtime inside a guarded process loads
those only once it has found a swarm to connect to.
"""

from __future__ import annotations

__all__ = ["RespConnectionError", "RespError"]


class RespError(Exception):
    """Redis answered with an error reply, or the connection failed."""


class RespConnectionError(RespError):
    """Redis could not be reached, or the connection broke: the server is away."""
