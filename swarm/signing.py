"""HMAC-SHA256 signatures on commands, and the target-side check that refuses bad ones.

The signature covers the command's canonical JSON without ``sig`` (its id,
target, actions, timestamp and nonce), so changing any field breaks it. A
target refuses a command that is unsigned, signed with another key,
tampered with, older than ``max_age_s`` (or from the future by as much), or
whose nonce it has already seen within twice that window.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from cachetools import TTLCache

from hivemind.swarm.messages import Command

__all__ = ["Verifier", "sign", "signature"]


def signature(command: Command, key: bytes) -> str:
    """The hex HMAC-SHA256 of ``command`` (all fields but ``sig``) under ``key``."""
    body = command.model_dump_json(exclude={"sig"}).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(command: Command, key: bytes) -> Command:
    """Return ``command`` with its ``sig`` set."""
    return command.model_copy(update={"sig": signature(command, key)})


class Verifier:
    """Checks commands for one target; remembers nonces to refuse replays.

    :meth:`check` returns ``None`` for a command that may run, else the
    reason it is refused: ``unsigned``, ``bad_signature``, ``stale``,
    ``replayed``, ``wrong_target``.
    """

    def __init__(
        self,
        key: bytes | None,
        target: str,
        *,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_nonces: int = 100_000,
    ) -> None:
        self._key = key
        self._target = target
        self._max_age = max_age_s
        self._clock = clock
        self._seen: TTLCache[str, bool] = TTLCache(
            maxsize=max_nonces, ttl=2 * max_age_s, timer=clock
        )

    def check(self, command: Command) -> str | None:
        if not command.sig:
            return "unsigned"
        if self._key is None:
            return "bad_signature"  # we have no key, so nothing can be trusted
        # Compare bytes: compare_digest raises TypeError on non-ASCII str.
        expected = signature(command, self._key).encode()
        if not hmac.compare_digest(command.sig.encode("utf-8", "replace"), expected):
            return "bad_signature"
        if command.target != self._target:
            return "wrong_target"
        if abs(self._clock() - command.ts) > self._max_age:
            return "stale"
        if command.nonce in self._seen:
            return "replayed"
        self._seen[command.nonce] = True
        return None
