"""Every message on the bus: pydantic models with a schema version ``v``.

Messages travel as JSON (never pickle). :func:`parse_message` turns bytes
from Redis into the right model or raises :class:`MessageError`; the bus
counts and drops those. Every number is bounded (timestamps, byte counts,
durations: finite and in a plausible range), so a forged or corrupt value
is refused at the edge instead of overflowing a Redis counter later.
Samples, events, decisions, acks and control messages travel sealed
(:mod:`hivemind.swarm.seal`); commands carry their own signature.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hivemind.swarm.vocab import ActionKind, Level

__all__ = [
    "SCHEMA_VERSION",
    "WIDGET_KINDS",
    "Ack",
    "Action",
    "ActionKind",
    "ActionResult",
    "CacheReport",
    "Command",
    "Control",
    "Decision",
    "GuardCost",
    "Holding",
    "Level",
    "MemorySample",
    "Message",
    "MessageError",
    "PressureEvent",
    "new_id",
    "owner_of",
    "parse_message",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TS = 4_102_444_800.0  # 2100-01-01: any later (or negative) timestamp is forged or corrupt
MAX_BYTES = 2**50  # 1 PiB: more than any process's memory
MAX_MS = 3_600_000.0  # one hour: longer than any action may take

_Ts = Annotated[float, Field(ge=0.0, le=MAX_TS)]
_Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES)]
_Freed = Annotated[int, Field(ge=-MAX_BYTES, le=MAX_BYTES)]  # RSS may grow during an action
_Ms = Annotated[float, Field(ge=0.0, le=MAX_MS)]
_Pid = Annotated[int, Field(ge=0, le=2**22)]  # Linux's pid_max ceiling
_Seq = Annotated[int, Field(ge=0, le=2**62)]


def new_id() -> str:
    """Return a short random id (hex of 12 bytes)."""
    return uuid.uuid4().hex[:24]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    v: Literal[1] = 1  # SCHEMA_VERSION
    ts: _Ts = Field(default_factory=time.time)


_Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/-]+$")]
Holding = Literal["caches", "pools"]
"""What a target holds that the swarm's reclaims act on: render caches, object pools."""


class GuardCost(BaseModel):
    """What guarding costs a target, and its in-target controller's state.

    Measured inside the target (:mod:`hivemind.swarm.target.cost`):
    ``gc_ms_per_s`` is the app's own time inside the collector per second,
    ``pause_p50_ms``/``pause_p99_ms`` its collection pauses, ``guard_cpu_pct``
    the runtime thread's CPU (% of one core, its own collections included).
    ``controller`` is ``idle``, ``engaged`` or ``infeasible``; ``threshold0``
    the gen-0 threshold in force (0: collector disabled); ``held_t0`` the
    least aggressive one that held the target; ``collections`` and
    ``freed_bytes`` the guard's own full collections and what they freed;
    ``live_over_bytes`` how far live data exceeds the target when infeasible.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    gc_ms_per_s: float = Field(0.0, ge=0, le=1e6)
    pause_p50_ms: float = Field(0.0, ge=0, le=1e7)
    pause_p99_ms: float = Field(0.0, ge=0, le=1e7)
    guard_cpu_pct: float = Field(0.0, ge=0, le=1e5)
    controller: Literal["off", "idle", "engaged", "infeasible"] = "off"
    threshold0: int = Field(0, ge=0, le=2**31)
    held_t0: int = Field(0, ge=0, le=2**31)
    collections: int = Field(0, ge=0, le=2**53)
    freed_bytes: int = Field(0, ge=0, le=2**53)
    live_over_bytes: int = Field(0, ge=0, le=2**53)


class MemorySample(_Msg):
    """One reading of a guarded process's memory (``cost``: see :class:`GuardCost`)."""

    kind: Literal["sample"] = "sample"
    target: _Name
    pid: _Pid
    seq: _Seq
    rss_bytes: _Bytes
    target_bytes: Annotated[int, Field(gt=0, le=MAX_BYTES)]
    reclaim_actions: tuple[_Name, ...] = Field((), max_length=32)  # what the target advertises
    cost: GuardCost | None = None
    caches_found: int = Field(0, ge=0, le=2**31)  # memo caches the target discovered in itself
    reclaimable_bytes: _Bytes = 0  # their estimated size plus the other actions'
    holds: tuple[Holding, ...] | None = Field(None, max_length=2)  # None: not said (older runtime)


class PressureEvent(_Msg):
    """A target (or the host) crossed from one level to another."""

    kind: Literal["pressure"] = "pressure"
    target: _Name
    level: Level
    previous: Level
    rss_bytes: _Bytes
    target_bytes: Annotated[int, Field(gt=0, le=MAX_BYTES)]
    sample_ts: _Ts
    reclaim_actions: tuple[_Name, ...] = Field((), max_length=32)  # from the target's sample
    cost: GuardCost | None = None  # the sample's, passed on by the benchmarker
    holds: tuple[Holding, ...] | None = Field(None, max_length=2)  # the sample's


class Action(BaseModel):
    """One thing to do in a target, with validated arguments.

    ``profile`` names the GC profile (``gc_profile``); ``generation`` the
    generation to collect (``collect``); ``fraction`` the share of pooled
    objects to drop (``trim_pools``) or, for ``evict_caches``, 0 for expired
    entries only and anything above for every entry; ``name`` the user's
    registered reclaim action (``reclaim``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ActionKind
    profile: Level | None = None
    generation: int | None = Field(None, ge=0, le=2)
    fraction: float | None = Field(None, ge=0.0, le=1.0)
    name: _Name | None = None


class Decision(_Msg):
    """What the coordinator chose for one target."""

    kind: Literal["decision"] = "decision"
    id: str = Field(default_factory=new_id, max_length=64)
    session_id: str = Field(max_length=128)
    target: _Name
    level: Level
    actions: tuple[Action, ...] = Field(max_length=16)
    reason: str = Field("", max_length=512)
    event_ts: _Ts
    sample_ts: _Ts


WIDGET_KINDS = frozenset(
    {ActionKind.TRIM_POOLS, ActionKind.EVICT_CACHES, ActionKind.RECLAIM, ActionKind.EMERGENCY}
)


def owner_of(decision: Decision) -> Literal["gc_optimizer", "widget_optimizer"]:
    """The optimizer agent ``decision`` is routed to: ``widget_optimizer`` if it includes
    any pool, cache, user reclaim or emergency action, else ``gc_optimizer``."""
    if any(a.kind in WIDGET_KINDS for a in decision.actions):
        return "widget_optimizer"
    return "gc_optimizer"


class Command(_Msg):
    """A signed instruction to one target. ``sig`` covers every other field."""

    kind: Literal["command"] = "command"
    id: str = Field(default_factory=new_id, max_length=64)
    decision_id: str = Field(max_length=64)
    target: _Name
    actions: tuple[Action, ...] = Field(max_length=16)
    nonce: str = Field(default_factory=new_id, min_length=8, max_length=64)
    sample_ts: _Ts = 0.0
    sig: str = Field("", max_length=128)


class ActionResult(BaseModel):
    """What one action freed in a target, measured as RSS before minus after."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ActionKind
    name: str = Field("", max_length=128)
    bytes_freed: _Freed = 0
    duration_ms: _Ms = 0.0
    ok: bool = True
    expected_bytes: int = Field(-1, ge=-1, le=MAX_BYTES)  # expected to free (-1: unknown)
    error: str = Field("", max_length=256)


class CacheReport(BaseModel):
    """A reclaimable cache a target found in itself (see ``swarm/target/planner.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(max_length=128)
    kind: Literal["lru", "interp", "plugin"]
    entries: int = Field(-1, ge=-1, le=2**40)
    bytes: int = Field(-1, ge=-1, le=MAX_BYTES)  # estimated
    hit_rate: float = Field(-1.0, ge=-1.0, le=1.0)
    cost: float = Field(0.0, ge=0, le=1e9)
    keep: bool = False


class Ack(_Msg):
    """A target's report of a command it carried out (or refused).

    ``phase="applied"`` is sent as soon as the actions ran; a second ack with
    ``phase="effect"`` follows a few seconds later with the app's collector
    time per second before (``gc_ms_per_s_before``) and after
    (``gc_ms_per_s_after``) the command: what the action cost the app.
    """

    kind: Literal["ack"] = "ack"
    command_id: str = Field(max_length=64)
    decision_id: str = Field(max_length=64)
    target: _Name
    ok: bool
    bytes_freed: _Freed = 0
    duration_ms: _Ms = 0.0
    applied_ts: _Ts = 0.0
    received_ts: _Ts = 0.0
    sample_ts: _Ts = 0.0
    results: tuple[ActionResult, ...] = Field((), max_length=32)
    error: str = Field("", max_length=512)  # why the target refused the command (ok=False)
    phase: Literal["applied", "effect"] = "applied"
    gc_ms_per_s_before: float = Field(0.0, ge=0, le=1e6)
    gc_ms_per_s_after: float | None = Field(None, ge=0, le=1e6)
    caches: tuple[CacheReport, ...] = Field((), max_length=16)  # what the target found


class Control(_Msg):
    """An instruction to the coordinator from the CLI or a hook (e.g. restore a session)."""

    kind: Literal["control"] = "control"
    op: Literal["restore"]
    session_id: str = Field(min_length=1, max_length=128)


Message = Annotated[
    MemorySample | PressureEvent | Decision | Command | Ack | Control,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)


class MessageError(ValueError):
    """Raised by :func:`parse_message` for anything that is not a valid message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _classify(exc: ValidationError) -> str:
    errors = exc.errors()
    if any(e["type"] in ("union_tag_invalid", "union_tag_not_found") for e in errors):
        return "unknown_kind"
    if any(e["loc"][1:2] == ("v",) for e in errors):
        return "version"
    return "invalid"


def parse_message(
    raw: bytes | str,
) -> MemorySample | PressureEvent | Decision | Command | Ack | Control:
    """Parse one JSON message, or raise :class:`MessageError` saying why not.

    ``reason`` is a short class of failure (``too_large``, ``invalid``,
    ``version``) so callers can count failures without logging each one.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError("too_large")
    try:
        msg = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise MessageError(_classify(exc)) from None
    except (ValueError, TypeError):
        raise MessageError("invalid") from None
    return msg  # type: ignore[no-any-return]
