"""The policy: a pure function from (event, target history, settings, learned table) to a decision.

No I/O, no clock reads (``now`` is an argument), so it is tested as a table
of cases and runs at well over 10k decisions a second.

- **Levels** are the seed's rule (``> target`` emergency, ``> 0.9``
  aggressive, ``> 0.7`` balanced, else conservative) with a de-escalation
  margin so a target on a boundary does not flap (:func:`classify`).
- **Ladder.** Each level has rungs of actions, cheapest first. The first
  decision at a level takes rung 0; if the target is still at that level
  after the level's cooldown and the last command freed less than
  ``enough_fraction`` of what was needed, the next decision climbs a rung
  (escalation). Moving up a level decides at once, with no cooldown.
- **Learning.** The learned table maps ``"{target}|{action}"`` to the mean
  bytes that action freed and the mean time it took. When it knows enough,
  the policy picks, from the rungs reached so far, the cheapest actions
  (by mean time) whose expected bytes cover the need, instead of all of them.
- **Backoff.** At the top rung, each decision that again frees too little
  doubles the cooldown (up to ``max_backoff_s``), so a target that simply
  needs more memory than its target is not collected to death.
- **In-target controller.** A target whose event says its own controller
  runs (``cost.controller`` other than ``off``) steers its collector,
  full collections and ``malloc_trim`` itself, without a round trip; the
  swarm then only sends what the target cannot choose alone: cache and pool
  eviction and the app's registered reclaim actions (:data:`IN_TARGET_KINDS`
  are left out). A target that reports itself infeasible (live data over
  its target) gets only what drops live data (:data:`LIVE_DATA_KINDS`: its
  caches and pools, and its own registered reclaim actions): the collector
  cannot free anything there, but a full render cache can still be emptied.
  The futile backoff keeps that cheap when there is nothing to drop.
- **Holdings.** A target's sample says which of render caches and object
  pools it has (``holds``); cache eviction and pool trimming are never sent
  to a target without them (each would cost it a verified command and an
  ack for nothing). A rung left empty by that is skipped at once: the first
  command is the first rung that can act on something (the app's reclaim
  actions at the top of ``aggressive``), not a no-op and a cooldown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from hivemind.swarm.messages import Action, ActionKind, Decision, Level, PressureEvent
from hivemind.swarm.vocab import MB, classify

__all__ = [
    "HOLDING_NEEDED",
    "IN_TARGET_KINDS",
    "LADDER",
    "LIVE_DATA_KINDS",
    "LearnedStat",
    "PolicyConfig",
    "TargetHistory",
    "classify",
    "decide",
    "learned_key",
    "record_ack",
]


@dataclass(frozen=True, slots=True)
class LearnedStat:
    """What one action has freed on one target so far (means over ``n`` runs)."""

    n: int
    bytes_freed: float
    duration_ms: float


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy's knobs; defaults are the seed's thresholds plus our timing."""

    margin: float = 0.05
    cooldown_s: Mapping[Level, float] = field(
        default_factory=lambda: {
            Level.CONSERVATIVE: 5.0,
            Level.BALANCED: 2.0,
            Level.AGGRESSIVE: 0.5,
            Level.EMERGENCY: 0.2,
        }
    )
    relief_ratio: float = 0.8  # aim to bring RSS back under this share of the target
    enough_fraction: float = 0.5  # freed less than this share of the need: escalate
    min_learned_runs: int = 2
    max_backoff_s: float = 10.0  # top rung and still futile: cooldown doubles up to this


@dataclass(frozen=True, slots=True)
class TargetHistory:
    """What the coordinator remembers about one target between events."""

    level: Level = Level.CONSERVATIVE
    last_decision_ts: float = 0.0
    rung: int = 0
    last_need: int = 0
    last_freed: int | None = None
    decisions: int = 0
    futile: int = 0  # decisions in a row at the top rung that freed too little


def _a(kind: ActionKind, **kw: object) -> Action:
    return Action(kind=kind, **kw)


LADDER: Mapping[Level, tuple[tuple[Action, ...], ...]] = {
    Level.CONSERVATIVE: ((_a(ActionKind.GC_PROFILE, profile=Level.CONSERVATIVE),),),
    Level.BALANCED: (
        (_a(ActionKind.GC_PROFILE, profile=Level.BALANCED), _a(ActionKind.COLLECT, generation=1)),
        (_a(ActionKind.EVICT_CACHES, fraction=0.0),),  # expired entries only
        (_a(ActionKind.COLLECT, generation=2),),
    ),
    Level.AGGRESSIVE: (
        # At 90 % of the target there is little room left: reclaim caches and
        # half the pools at once, so the next allocations do not cross it.
        (
            _a(ActionKind.GC_PROFILE, profile=Level.AGGRESSIVE),
            _a(ActionKind.EVICT_CACHES, fraction=1.0),
            _a(ActionKind.TRIM_POOLS, fraction=0.5),
            _a(ActionKind.COLLECT, generation=2),
            _a(ActionKind.MALLOC_TRIM),
        ),
        (_a(ActionKind.TRIM_POOLS, fraction=1.0),),
    ),
    Level.EMERGENCY: (
        (
            _a(ActionKind.GC_PROFILE, profile=Level.EMERGENCY),
            _a(ActionKind.EVICT_CACHES, fraction=1.0),
            _a(ActionKind.TRIM_POOLS, fraction=1.0),
            _a(ActionKind.COLLECT, generation=2),
            _a(ActionKind.MALLOC_TRIM),
        ),
        (_a(ActionKind.EMERGENCY),),  # everything, plus the user's reclaim actions
    ),
}


IN_TARGET_KINDS = frozenset(
    {
        ActionKind.GC_PROFILE,
        ActionKind.COLLECT,
        ActionKind.MALLOC_TRIM,
        ActionKind.EMERGENCY,
    }
)
"""What a target's own controller does itself: never sent to a target that runs one."""
LIVE_DATA_KINDS = frozenset({ActionKind.EVICT_CACHES, ActionKind.TRIM_POOLS, ActionKind.RECLAIM})
"""What can free live data: sent even to a target that reports itself infeasible."""
HOLDING_NEEDED: Mapping[ActionKind, str] = {
    ActionKind.EVICT_CACHES: "caches",
    ActionKind.TRIM_POOLS: "pools",
}
"""What a target must hold (its sample's ``holds``) for an action of this kind to do anything."""


def learned_key(target: str, action: Action) -> str:
    """The learned-table key for ``action`` on ``target`` (``"{target}|{kind}[:{arg}]"``)."""
    arg = action.name or (action.profile.value if action.profile else "")
    if action.generation is not None:
        arg = str(action.generation)
    if action.fraction is not None:
        arg = f"{action.fraction:g}"
    return f"{target}|{action.kind.value}" + (f":{arg}" if arg else "")


def _choose(
    target: str,
    candidates: list[Action],
    need: int,
    learned: Mapping[str, LearnedStat],
    config: PolicyConfig,
) -> list[Action]:
    """The cheapest subset of ``candidates`` expected to free ``need`` bytes, else all."""
    free = [a for a in candidates if a.kind is ActionKind.GC_PROFILE]
    costly = [a for a in candidates if a.kind is not ActionKind.GC_PROFILE]
    stats = [learned.get(learned_key(target, a)) for a in costly]
    if need <= 0 or not costly or any(s is None or s.n < config.min_learned_runs for s in stats):
        return candidates
    ranked = sorted(zip(costly, stats, strict=True), key=lambda p: p[1].duration_ms)  # type: ignore[union-attr]
    chosen: list[Action] = []
    expected = 0.0
    for action, stat in ranked:
        chosen.append(action)
        expected += max(0.0, stat.bytes_freed)  # type: ignore[union-attr]
        if expected >= need:
            return free + chosen
    return candidates


def _sendable(
    level: Level, rung: int, event: PressureEvent, in_target: bool, infeasible: bool
) -> tuple[list[Action], list[Action]]:
    """The actions of ``level``'s rungs up to ``rung``: those the swarm would send this
    target (not what its own controller does), and of those, what acts on something
    it holds (no cache eviction or pool trimming for a target that has none)."""
    ladder = LADDER[level]
    wanted = [a for r in ladder[: rung + 1] for a in r]
    if level is Level.EMERGENCY or (level is Level.AGGRESSIVE and rung == len(ladder) - 1):
        wanted += [_a(ActionKind.RECLAIM, name=n) for n in event.reclaim_actions]
    if in_target:
        wanted = [a for a in wanted if a.kind not in IN_TARGET_KINDS]
        if infeasible:  # only dropping what caches, pools and reclaim actions hold can help
            wanted = [a for a in wanted if a.kind in LIVE_DATA_KINDS]
    if event.holds is None:  # not said (an older runtime): assume it holds both
        return wanted, wanted
    return wanted, [a for a in wanted if HOLDING_NEEDED.get(a.kind, "") in ("", *event.holds)]


def decide(
    event: PressureEvent,
    history: TargetHistory,
    *,
    now: float,
    session_id: str,
    learned: Mapping[str, LearnedStat] | None = None,
    config: PolicyConfig | None = None,
) -> tuple[Decision | None, TargetHistory]:
    """Decide what ``event``'s target should do now; return the decision and new history.

    Returns ``(None, history)`` while a cooldown holds or nothing needs doing.
    """
    config = config or PolicyConfig()
    learned = learned or {}
    in_target = event.cost is not None and event.cost.controller != "off"
    infeasible = in_target and event.cost is not None and event.cost.controller == "infeasible"
    level = event.level
    need = max(0, event.rss_bytes - int(event.target_bytes * config.relief_ratio))
    same = level == history.level
    cooldown = config.cooldown_s[level]
    if same and history.futile:
        # Nothing we have frees enough (the target may just need more memory):
        # back off instead of burning the target's CPU on futile collections.
        cooldown = min(config.max_backoff_s, cooldown * 2**history.futile)
    if same and now - history.last_decision_ts < cooldown:
        return None, history
    if level is Level.CONSERVATIVE and same:
        return None, history  # nothing to relieve, profile already relaxed
    top = len(LADDER[level]) - 1
    rung = 0
    futile = 0
    reason = f"{event.previous.value} -> {level.value}"
    if same:
        freed_too_little = (
            history.last_freed is None
            or history.last_freed < config.enough_fraction * history.last_need
        )
        rung = min(history.rung + 1, top) if freed_too_little else history.rung
        futile = history.futile + 1 if freed_too_little and history.rung == top else 0
        reason = (
            f"still {level.value}; last command freed "
            f"{(history.last_freed or 0) / MB:.1f} MB of {history.last_need / MB:.1f} MB needed"
            + ("; escalating" if rung > history.rung else "")
        )
    wanted, candidates = _sendable(level, rung, event, in_target, infeasible)
    while wanted and not candidates and rung < top:
        rung += 1  # this rung only evicts caches or trims pools the target has none of
        wanted, candidates = _sendable(level, rung, event, in_target, infeasible)
        reason += f"; rung {rung}: the target holds nothing the rung below acts on"
    if not wanted:
        # Its own controller does it all: nothing to send, but the level is remembered:
        # a target that came back down is "moving up a level" when it crosses again,
        # decided at once (not "still at that level", under a cooldown grown by backoff).
        return None, history if same else replace(history, level=level)
    rung_history = replace(
        history,
        level=level,
        last_decision_ts=now,
        rung=rung,
        last_need=need,
        last_freed=None,
        futile=futile,
    )
    if not candidates:
        # Even the top rung only evicts caches or trims pools the target has none of:
        # nothing is sent; it counts as tried and freeing nothing (futile backoff).
        return None, replace(rung_history, last_freed=0)
    actions = _choose(event.target, candidates, need, learned, config)
    decision = Decision(
        session_id=session_id,
        target=event.target,
        level=level,
        actions=tuple(actions),
        reason=reason,
        event_ts=event.ts,
        sample_ts=event.sample_ts,
        ts=now,
    )
    return decision, replace(rung_history, decisions=history.decisions + 1)


def record_ack(history: TargetHistory, bytes_freed: int) -> TargetHistory:
    """Fold a command's measured effect into the history (several acks add up)."""
    return replace(history, last_freed=(history.last_freed or 0) + max(0, bytes_freed))
