"""HMAC-SHA256 signatures on commands (the sender's side).

The signature covers the command's canonical JSON without ``sig`` (its id,
target, actions, timestamp and nonce), so changing any field breaks it. A
target checks it on the raw bytes, before parsing, with
:class:`hivemind.swarm.target.envelope.CommandVerifier`, which refuses a
command that is unsigned, signed with another key, tampered with, stale or
replayed.
"""

from __future__ import annotations

import hashlib
import hmac

from hivemind.swarm.messages import Command

__all__ = ["sign", "signature"]


def signature(command: Command, key: bytes) -> str:
    """The hex HMAC-SHA256 of ``command`` (all fields but ``sig``) under ``key``."""
    body = command.model_dump_json(exclude={"sig"}).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(command: Command, key: bytes) -> Command:
    """Return ``command`` with its ``sig`` set."""
    return command.model_copy(update={"sig": signature(command, key)})
