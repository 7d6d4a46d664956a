"""Every message on the bus: pydantic models with a schema version ``v``.

Messages travel as JSON (never pickle). :func:`parse_message` turns bytes
from Redis into the right model or raises :class:`MessageError`; the bus
counts and drops those.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hivemind.swarm.vocab import ActionKind, AgentRole, Level

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "Action",
    "ActionKind",
    "ActionResult",
    "CacheReport",
    "Command",
    "Control",
    "Decision",
    "GuardCost",
    "Heartbeat",
    "Level",
    "MemorySample",
    "Message",
    "MessageError",
    "PressureEvent",
    "new_id",
    "parse_message",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024


def new_id() -> str:
    """Return a short random id (hex of 12 bytes)."""
    return uuid.uuid4().hex[:24]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    v: Literal[1] = 1  # SCHEMA_VERSION
    ts: float = Field(default_factory=time.time)


_Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/-]+$")]


class Heartbeat(_Msg):
    """An agent or a target saying it is alive."""

    kind: Literal["heartbeat"] = "heartbeat"
    name: _Name
    role: AgentRole | Literal["target"]
    pid: int = Field(ge=0)
    node: str = Field("", max_length=256)
    restarts: int = Field(0, ge=0)


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
    pid: int = Field(ge=0)
    seq: int = Field(ge=0)
    rss_bytes: int = Field(ge=0)
    target_bytes: int = Field(gt=0)
    gc_counts: tuple[int, int, int] = (0, 0, 0)
    local_level: Level = Level.CONSERVATIVE
    reclaim_actions: tuple[_Name, ...] = Field((), max_length=32)
    cost: GuardCost | None = None
    caches_found: int = Field(0, ge=0)  # memo caches the target discovered in itself
    reclaimable_bytes: int = Field(0, ge=0)  # their estimated size plus the other actions'


class PressureEvent(_Msg):
    """A target (or the host) crossed from one level to another."""

    kind: Literal["pressure"] = "pressure"
    target: _Name
    level: Level
    previous: Level
    rss_bytes: int = Field(ge=0)
    target_bytes: int = Field(gt=0)
    sample_ts: float
    seq: int = Field(ge=0)
    host_available_bytes: int | None = Field(None, ge=0)
    psi_some_avg10: float | None = Field(None, ge=0)
    reclaim_actions: tuple[_Name, ...] = Field((), max_length=32)
    cost: GuardCost | None = None  # the sample's, passed on by the benchmarker


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
    event_ts: float
    sample_ts: float


class Command(_Msg):
    """A signed instruction to one target. ``sig`` covers every other field."""

    kind: Literal["command"] = "command"
    id: str = Field(default_factory=new_id, max_length=64)
    decision_id: str = Field(max_length=64)
    target: _Name
    actions: tuple[Action, ...] = Field(max_length=16)
    nonce: str = Field(default_factory=new_id, min_length=8, max_length=64)
    sample_ts: float = 0.0
    sig: str = Field("", max_length=128)


class ActionResult(BaseModel):
    """What one action freed in a target, measured as RSS before minus after."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ActionKind
    name: str = Field("", max_length=128)
    bytes_freed: int = 0
    duration_ms: float = Field(0.0, ge=0)
    ok: bool = True
    expected_bytes: int = -1  # what the target expected it to free (-1: unknown)
    error: str = Field("", max_length=256)


class CacheReport(BaseModel):
    """A reclaimable cache a target found in itself (see ``swarm/target/planner.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(max_length=128)
    kind: Literal["lru", "interp", "plugin"]
    entries: int = -1
    bytes: int = -1  # estimated
    hit_rate: float = -1.0
    cost: float = Field(0.0, ge=0)
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
    bytes_freed: int = 0
    duration_ms: float = Field(0.0, ge=0)
    applied_ts: float = 0.0
    received_ts: float = 0.0
    sample_ts: float = 0.0
    results: tuple[ActionResult, ...] = Field((), max_length=32)
    error: str = Field("", max_length=512)
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
    Heartbeat | MemorySample | PressureEvent | Decision | Command | Ack | Control,
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
) -> Heartbeat | MemorySample | PressureEvent | Decision | Command | Ack | Control:
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
