"""Hypothesis strategies for hostile bus payloads, and the oracle that says which are bad.

Every strategy yields ``bytes`` as a publisher would put them on the wire:
valid models with one field mutated, valid models of the wrong kind, wrong
schema versions, random bytes, oversized bodies, deep nesting, unicode and
invalid UTF-8. :func:`is_bad` is the ground truth a subscriber must agree
with: a payload is bad when :func:`parse_message` refuses it or its kind is
not one the subscriber expects. :func:`authenticated_variant` wraps a
payload for a sealed channel: unsealed, sealed with another key, sealed with
the right key around a bad body, or with a broken signature, so that every
one of them must still be dropped.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from hivemind.swarm.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    ActionKind,
    Command,
    Control,
    Decision,
    Level,
    MemorySample,
    MessageError,
    PressureEvent,
    parse_message,
)
from hivemind.swarm.seal import SIG_HEX_LEN, seal

__all__ = [
    "MODELS",
    "authenticated_variant",
    "hostile_group",
    "is_bad",
    "payloads",
    "valid_message",
]

MODELS: tuple[type[BaseModel], ...] = (
    MemorySample,
    PressureEvent,
    Decision,
    Command,
    Ack,
    Control,
)

NAME_CHARS = "abcxyzABC0189_.:@/-"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=20)
levels = st.sampled_from([lvl.value for lvl in Level])
kinds = st.sampled_from([k.value for k in ActionKind])
small_ints = st.integers(0, 2**40)
timestamps = st.floats(0, 2e9, allow_nan=False)
now_ts = st.just(0.0).map(lambda _: time.time())

_action = st.fixed_dictionaries(
    {"kind": kinds},
    optional={
        "profile": levels,
        "generation": st.integers(0, 2),
        "fraction": st.floats(0, 1),
        "name": names,
    },
)
_actions = st.lists(_action, max_size=3)

# Plain dicts shaped like each model (valid unless a mutation breaks them);
# drawing dicts is several times cheaper than building pydantic models.
_SHAPES: dict[type[BaseModel], st.SearchStrategy[dict[str, Any]]] = {
    MemorySample: st.fixed_dictionaries(
        {
            "kind": st.just("sample"),
            "v": st.just(1),
            "ts": now_ts,
            "target": names,
            "pid": st.integers(0, 2**22),
            "seq": small_ints,
            "rss_bytes": small_ints,
            "target_bytes": st.integers(1, 2**40),
            "reclaim_actions": st.lists(names, max_size=3),
        }
    ),
    PressureEvent: st.fixed_dictionaries(
        {
            "kind": st.just("pressure"),
            "v": st.just(1),
            "ts": now_ts,
            "target": names,
            "level": levels,
            "previous": levels,
            "rss_bytes": small_ints,
            "target_bytes": st.integers(1, 2**40),
            "sample_ts": timestamps,
            "reclaim_actions": st.lists(names, max_size=3),
        }
    ),
    Decision: st.fixed_dictionaries(
        {
            "kind": st.just("decision"),
            "v": st.just(1),
            "ts": now_ts,
            "id": names,
            "session_id": names,
            "target": names,
            "level": levels,
            "actions": _actions,
            "event_ts": timestamps,
            "sample_ts": timestamps,
        }
    ),
    Command: st.fixed_dictionaries(
        {
            "kind": st.just("command"),
            "v": st.just(1),
            "ts": now_ts,
            "id": names,
            "decision_id": names,
            "target": names,
            "actions": _actions,
            "nonce": st.text(alphabet="0123456789abcdef", min_size=8, max_size=32),
            "sig": st.sampled_from(["", "0" * 64, "deadbeef"]),
        }
    ),
    Ack: st.fixed_dictionaries(
        {
            "kind": st.just("ack"),
            "v": st.just(1),
            "ts": now_ts,
            "command_id": names,
            "decision_id": names,
            "target": names,
            "ok": st.booleans(),
            "results": st.lists(st.fixed_dictionaries({"kind": kinds}), max_size=2),
        }
    ),
    Control: st.fixed_dictionaries(
        {"kind": st.just("control"), "v": st.just(1), "op": st.just("restore"), "session_id": names}
    ),
}


def valid_message(model: type[BaseModel]) -> st.SearchStrategy[bytes]:
    """JSON shaped like ``model`` (usually valid; the oracle decides)."""
    return _SHAPES[model].map(lambda d: json.dumps(d).encode())


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, -1, 0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
)


def _dumps(data: Any, ascii_only: bool) -> bytes:
    return json.dumps(data, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


MUTATIONS = [
    "replace",
    "replace",
    "replace",
    "delete",
    "extra",
    "version",
    "kind",
    "huge",
    "unicode",
]


@st.composite
def mutated(draw: st.DrawFn, models: tuple[type[BaseModel], ...]) -> bytes:
    """A valid model of one of ``models`` with one hostile change."""
    model = draw(st.sampled_from(models))
    data = dict(draw(_SHAPES[model]))
    field = draw(st.sampled_from(sorted(data)))
    how = draw(st.sampled_from(MUTATIONS))
    if how == "replace":
        data[field] = draw(json_values)
    elif how == "delete":
        del data[field]
    elif how == "extra":
        data[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    elif how == "version":
        data["v"] = draw(st.integers(-5, 10**6).filter(lambda v: v != 1) | json_scalars)
    elif how == "kind":
        data["kind"] = draw(st.text(max_size=20) | json_scalars)
    elif how == "huge":
        data[field] = "x" * draw(st.integers(200, MAX_MESSAGE_BYTES - 2000))
    else:
        data[field] = draw(
            st.text(min_size=1, max_size=40).map(lambda s: s + "\u202e\U0001f600\ud800")
        )
    return _dumps(data, draw(st.booleans()))


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """Deeply nested arrays/objects, alone or inside a field of a message."""
    depth = draw(st.integers(30, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    body = opener * depth + "1" + closer * depth
    if draw(st.booleans()):
        body = (
            '{"kind":"sample","v":1,"target":"x","pid":1,"seq":1,"rss_bytes":1,"target_bytes":1,"reclaim_actions":'
            + body
            + "}"
        )
    return body.encode()


@st.composite
def oversized(draw: st.DrawFn) -> bytes:
    """A body just over, or well over, the 64 KiB limit."""
    size = draw(st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES))
    head = b'{"kind":"ack","v":1,"error":"'
    return head + b"y" * (size - len(head) - 2) + b'"}'


@st.composite
def garbage_text(draw: st.DrawFn) -> bytes:
    """Random unicode or JSON scalars, as text (not an object, or not JSON at all)."""
    text = draw(st.text(max_size=200) | json_values.map(lambda v: json.dumps(v, allow_nan=True)))
    return text.encode("utf-8", "surrogatepass")


def payloads(models: tuple[type[BaseModel], ...]) -> st.SearchStrategy[bytes]:
    """Hostile payloads for a channel whose subscriber expects ``models``.

    Weighted (percent): 55 mutated messages of the expected kinds (the
    hardest to tell from valid ones), 10 mutated messages of any kind, 8
    valid messages of a kind this subscriber does not take, 6 random bytes,
    8 garbage text or JSON scalars, 5 deep nesting, 1 oversized, 2 empty,
    5 unknown kinds.
    """
    others = tuple(m for m in MODELS if m not in models) or MODELS
    wrong_kind = st.sampled_from(others).flatmap(valid_message)
    unknown_kind = st.binary(min_size=1, max_size=50).map(lambda b: b'{"kind":"' + b + b'","v":1}')
    table: list[tuple[int, st.SearchStrategy[bytes]]] = [
        (55, mutated(models)),
        (10, mutated(MODELS)),
        (8, wrong_kind),
        (6, st.binary(max_size=300)),
        (8, garbage_text()),
        (5, nested()),
        (1, oversized()),
        (2, st.just(b"")),
        (5, unknown_kind),
    ]
    cumulative = []
    total = 0
    for weight, strategy in table:
        total += weight
        cumulative.append((total, strategy))

    def pick(n: int) -> st.SearchStrategy[bytes]:
        return next(s for bound, s in cumulative if n < bound)

    return st.integers(0, total - 1).flatmap(pick)


def _derive(raw: bytes, op: str, n: int) -> bytes:
    """A classic byte-level fuzz mutation of ``raw`` (cheap: no extra drawing)."""
    at = n % (len(raw) + 1)
    if op == "truncate":
        return raw[:at]
    if op == "flip":
        return (
            raw[:at]
            + bytes([(raw[at] ^ (1 << (n % 8))) if at < len(raw) else n % 256])
            + raw[at + 1 :]
        )
    if op == "bad_utf8":
        return raw[:at] + b"\xc3\x28\xff" + raw[at:]
    if op == "array":
        return b"[" + raw + b"]"
    if op == "trailing":
        return raw + b" }garbage"
    if op == "bom":
        return b"\xef\xbb\xbf" + raw
    if op == "version":
        return raw.replace(b'"v": 1', b'"v": %d' % (n % 50 + 2)).replace(b'"v":1', b'"v":0')
    return raw.replace(b'"kind": "', b'"kind": "x') or b"{}"


DERIVE_OPS = ("truncate", "flip", "bad_utf8", "array", "trailing", "bom", "version", "kind")


@st.composite
def hostile_group(
    draw: st.DrawFn, models: tuple[type[BaseModel], ...], size: int = 5
) -> list[bytes]:
    """One drawn payload and ``size - 1`` byte-level derivatives of it."""
    raw = draw(payloads(models))
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(DERIVE_OPS), st.integers(0, 2**20)),
            min_size=size - 1,
            max_size=size - 1,
        )
    )
    return [raw, *(_derive(raw, op, n) for op, n in ops)]


def is_bad(raw: bytes, expect: tuple[type[BaseModel], ...]) -> bool:
    """True when a subscriber expecting ``expect`` must drop (and count) ``raw``."""
    try:
        msg = parse_message(raw)
    except MessageError:
        return True
    return not isinstance(msg, expect)


def fresh(model: BaseModel) -> BaseModel:
    """``model`` with ``ts`` set to now (for valid messages sent after the fuzzing)."""
    return model.model_copy(update={"ts": time.time()})


WRONG_KEY = b"w" * 32


def authenticated_variant(
    raw: bytes, n: int, key: bytes, expect: tuple[type[BaseModel], ...]
) -> bytes:
    """``raw`` as a forger would send it on a sealed channel (chosen by ``n``).

    0: unsealed; 1: sealed with another key; 2: sealed with the right key
    around a body the subscriber must refuse (else with another key);
    3: sealed with the right key, then one signature character changed.
    """
    mode = n % 4
    if mode == 0:
        return raw
    if mode == 1 or (mode == 2 and not is_bad(raw, expect)):
        return seal(raw, WRONG_KEY)
    sealed = seal(raw, key)
    if mode == 2:
        return sealed
    at = 8 + (n // 4) % SIG_HEX_LEN
    swapped = b"0" if sealed[at : at + 1] != b"0" else b"1"
    return sealed[:at] + swapped + sealed[at + 1 :]
