"""Verify a signed command from its raw bytes, before parsing anything, without pydantic.

The optimizer agents publish ``Command.model_dump_json()`` with ``sig`` as
its last field, and :func:`hivemind.swarm.signing.signature` is the
HMAC-SHA256 of the same JSON without ``sig``. So the signed body is the raw
message with its trailing ``,"sig":"<hex>"}`` cut to ``}``: the target
checks the HMAC of those exact bytes first, and only a message that passes
is ever decoded (``json.loads``) and checked field by field (kind, version,
target, age, nonce, actions). Same keys, same signature: compatible with
the sender side as it is.

HMAC is computed with the interpreter's built-in ``_sha256`` (importing
``hashlib``/``hmac`` would map OpenSSL's libcrypto, ~3.7 MB RSS, into every
guarded process). Nothing here raises: :meth:`CommandVerifier.check`
returns a refusal reason or the decoded command.
"""

from __future__ import annotations

import json
import time
from _operator import _compare_digest
from collections.abc import Callable

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from hashlib import sha256 as _sha256
    from typing import Any
else:
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:  # pragma: no cover - builds without the built-in module
        from hashlib import sha256 as _sha256

__all__ = ["ACTION_KINDS", "MAX_COMMAND_BYTES", "CommandVerifier", "hmac_sha256_hex"]

MAX_COMMAND_BYTES = 64 * 1024
ACTION_KINDS = frozenset(
    {
        "gc_profile",
        "collect",
        "trim_pools",
        "evict_caches",
        "malloc_trim",
        "reclaim",
        "emergency",
    }
)
_PROFILES = frozenset({"conservative", "balanced", "aggressive", "emergency"})
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/-")
_HEX = frozenset(b"0123456789abcdef")
_ACTION_FIELDS = frozenset({"kind", "profile", "generation", "fraction", "name"})
_COMMAND_FIELDS = frozenset(
    {"v", "ts", "kind", "id", "decision_id", "target", "actions", "nonce", "sample_ts"}
)


def hmac_sha256_hex(key: bytes, msg: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) of ``msg`` under ``key``, hex; equal to ``hmac.new(...)``."""
    inner, outer = _pads(key)
    return str(_sha256(outer + _sha256(inner + msg).digest()).hexdigest())


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > 64:
        key = _sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _split_sig(raw: bytes) -> tuple[int, bytes]:
    """Where the trailing ``"sig"`` member starts (its comma) and its value; (-1, b"") if none.

    The signed body is ``raw[:mark] + b"}"``; only the compact form the
    sender writes can verify, but any spacing is recognised as "signed".
    """
    key = raw.rfind(b'"sig"')
    if key < 0 or not raw.endswith(b"}"):
        return -1, b""
    comma = raw.rfind(b",", 0, key)
    rest = raw[key + 5 : -1].strip()
    if comma < 0 or raw[comma + 1 : key].strip() or not rest.startswith(b":"):
        return -1, b""
    value = rest[1:].strip()
    if len(value) < 2 or not value.startswith(b'"') or not value.endswith(b'"'):
        return -1, b""
    return comma, value[1:-1]


def _name_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _NAME_OK


def _num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _action_ok(a: object) -> bool:
    if not isinstance(a, dict) or not set(a) <= _ACTION_FIELDS or a.get("kind") not in ACTION_KINDS:
        return False
    profile, gen, frac, name = (a.get(k) for k in ("profile", "generation", "fraction", "name"))
    return (
        (profile is None or profile in _PROFILES)
        and (gen is None or (isinstance(gen, int) and not isinstance(gen, bool) and 0 <= gen <= 2))
        and (frac is None or (_num(frac) and 0.0 <= frac <= 1.0))
        and (name is None or _name_ok(name))
    )


class CommandVerifier:
    """Checks raw commands for one target; remembers nonces to refuse replays.

    :meth:`check` returns ``(None, command_dict)`` for a command that may
    run, else ``(reason, None)`` with reason one of ``too_large``,
    ``unsigned``, ``bad_signature``, ``malformed_invalid``,
    ``malformed_version``, ``wrong_target``, ``stale``, ``replayed``. ``refused``
    holds the last command refused *after* its signature held (wrong target,
    stale, replayed), so the target can ack the refusal to its sender.
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
        self._pads = _pads(key) if key else None
        self._target = target
        self._max_age = max_age_s
        self._clock = clock
        self._max_nonces = max_nonces
        self._seen: dict[str, float] = {}  # nonce -> expiry (insertion order = age order)
        self.refused: dict[str, Any] | None = None

    def _signature_ok(self, body: bytes, sig: bytes) -> bool:
        assert self._pads is not None
        inner, outer = self._pads
        expected = _sha256(outer + _sha256(inner + body).digest()).hexdigest().encode()
        return bool(_compare_digest(sig, expected))

    def check(self, raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
        """Verify ``raw`` (signature first), then decode and check it; see the class doc."""
        self.refused = None
        if len(raw) > MAX_COMMAND_BYTES:
            return "too_large", None
        raw = raw.rstrip()
        mark, sig = _split_sig(raw)
        if mark < 0 or not sig:
            return "unsigned", None
        if self._pads is None:
            return "bad_signature", None  # no key: nothing can be trusted
        if len(sig) != 64 or not set(sig) <= _HEX:
            return "bad_signature", None
        if not self._signature_ok(raw[:mark] + b"}", sig):
            return "bad_signature", None
        # Authentic from here on: decode and check the fields.
        try:
            cmd = json.loads(raw[:mark] + b"}")
        except ValueError:
            return "malformed_invalid", None
        if not isinstance(cmd, dict) or cmd.get("kind") != "command":
            return "malformed_invalid", None
        if cmd.get("v") != 1:
            return "malformed_version", None
        actions = cmd.get("actions")
        if (
            not set(cmd) <= _COMMAND_FIELDS
            or not _num(cmd.get("ts"))
            or not isinstance(cmd.get("id"), str)
            or not isinstance(cmd.get("decision_id"), str)
            or not isinstance(cmd.get("nonce"), str)
            or not 8 <= len(cmd["nonce"]) <= 64
            or not isinstance(actions, list)
            or len(actions) > 16
            or not all(_action_ok(a) for a in actions)
            or not _num(cmd.get("sample_ts", 0.0))
        ):
            return "malformed_invalid", None
        if cmd.get("target") != self._target:
            self.refused = cmd
            return "wrong_target", None
        now = self._clock()
        if abs(now - cmd["ts"]) > self._max_age:
            self.refused = cmd
            return "stale", None
        self._expire(now)
        if cmd["nonce"] in self._seen:
            self.refused = cmd
            return "replayed", None
        self._seen[cmd["nonce"]] = now + 2 * self._max_age
        return None, cmd

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            nonce, expiry = next(iter(seen.items()))
            if expiry > now and len(seen) < self._max_nonces:
                return
            del seen[nonce]
