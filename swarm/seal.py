"""Sealed bus messages: the exact JSON body plus its HMAC-SHA256, checked before parsing.

Every message that can lead to an action in a guarded process travels
sealed (samples, pressure events, decisions, acks):
``{"sig":"<64 hex>","body":<the message's JSON>}``. The signature covers
the body's bytes exactly as sent, so the receiver verifies it before it
parses anything, and sender and receiver need not agree on a canonical
form (the guarded-process runtime builds its JSON with :mod:`json`, the
agents with pydantic). The key is the swarm's shared secret
(:mod:`hivemind.swarm.secret`). Built-in modules only (no ``hashlib``/``hmac``,
no pydantic): the runtime inside a user's process imports this module.

Freshness and replays are the receiver's job (every message carries
``ts``; decisions and acks carry ids the receiver remembers).
"""

from __future__ import annotations

from _operator import _compare_digest

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from hashlib import sha256 as _sha256
    from typing import Any
else:
    try:  # the interpreter's built-in module: hashlib/hmac would map OpenSSL's libcrypto
        from _sha256 import sha256 as _sha256  # (~3.7 MB RSS) into every guarded process
    except ImportError:  # pragma: no cover - builds without the built-in module
        from hashlib import sha256 as _sha256

__all__ = ["SIG_HEX_LEN", "SealError", "body_unverified", "is_sealed", "seal", "unseal"]

SIG_HEX_LEN = 64
_HEAD = b'{"sig":"'
_MID = b'","body":'
_BODY_AT = len(_HEAD) + SIG_HEX_LEN + len(_MID)


class SealError(ValueError):
    """Raised by :func:`unseal`; ``reason`` is ``unsigned``, ``no_key`` or ``bad_signature``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))
_pads: dict[bytes, tuple[Any, Any]] = {}  # key -> (inner, outer) hash states, primed


def _mac(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of ``body`` under ``key``, hex; equal to ``hmac.new(...)``."""
    pads = _pads.get(key)
    if pads is None:
        block = (_sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = (_sha256(block.translate(_TRANS_36)), _sha256(block.translate(_TRANS_5C)))
        if len(_pads) < 8:  # a process holds one key; never let this grow
            _pads[key] = pads
    inner, outer = pads[0].copy(), pads[1].copy()
    inner.update(body)
    outer.update(inner.digest())
    return outer.hexdigest().encode()


def seal(body: bytes | str, key: bytes) -> bytes:
    """Return the sealed wire form of the JSON ``body`` under ``key``."""
    raw = body.encode() if isinstance(body, str) else body
    return _HEAD + _mac(key, raw) + _MID + raw + b"}"


def is_sealed(raw: bytes | str) -> bool:
    """True if ``raw`` has the sealed envelope's shape (says nothing of its signature)."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    return data.startswith(_HEAD) and data[_BODY_AT - len(_MID) : _BODY_AT] == _MID


def unseal(raw: bytes | str, key: bytes | None) -> bytes:
    """Return the body of the sealed ``raw`` if its signature holds under ``key``.

    Raises :class:`SealError`: ``unsigned`` (not a sealed envelope),
    ``no_key`` (we hold no key, so nothing can be trusted) or
    ``bad_signature`` (another key, or a changed byte).
    """
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    if not is_sealed(data) or not data.endswith(b"}"):
        raise SealError("unsigned")
    if not key:
        raise SealError("no_key")
    body = data[_BODY_AT:-1]
    if not _compare_digest(data[len(_HEAD) : len(_HEAD) + SIG_HEX_LEN], _mac(key, body)):
        raise SealError("bad_signature")
    return body


def body_unverified(raw: bytes | str) -> bytes:
    """The body of a sealed ``raw`` (``raw`` itself if not sealed), signature NOT checked.

    For observers that never act on what they read.
    """
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    return data[_BODY_AT:-1] if is_sealed(data) and data.endswith(b"}") else data
