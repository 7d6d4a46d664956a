"""Commands inside the target: receiving, verifying, applying and acking them.

:class:`CommandsMixin` is the part of :class:`~hivemind.swarm.target.runtime.Runtime`
that handles what arrives on ``hm:{ns}:cmd:{name}``. A command over
:data:`~hivemind.swarm.target.link.MAX_COMMAND_BYTES` is refused unread; the
rest is checked by :class:`~hivemind.swarm.target.envelope.CommandVerifier`
(the HMAC of the raw bytes first, then fields, age, nonce and target) and may
name only reclaim actions this target registered; then
:func:`~hivemind.swarm.target.actions.apply_actions` carries it out. An applied
command is acked (sealed) with what it freed, and once its effect window has
passed, again with its cost to the app (``phase="effect"``); an authentic
command that is refused is acked with ``ok=False`` and the reason; a forged
one is only counted. The verifier and the actions are imported with the
first command, never at attach.
"""

from __future__ import annotations

import contextlib
import json
import time

from hivemind.swarm.redis.errors import RespError
from hivemind.swarm.target.inbox import TOO_LARGE
from hivemind.swarm.target.link import MAX_COMMAND_BYTES, SCHEMA_VERSION

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from collections import Counter, deque

    from hivemind.swarm.keys import Keys
    from hivemind.swarm.redis.resp import Connection
    from hivemind.swarm.target.controller import Controller
    from hivemind.swarm.target.cost import CostMeter, EffectTracker
    from hivemind.swarm.target.envelope import CommandVerifier
    from hivemind.swarm.target.reclaim import ReclaimRegistry
    from hivemind.swarm.target.runtime import RuntimeConfig
    from hivemind.swarm.target.wiring import ReclaimHook

__all__ = ["CommandsMixin"]


class CommandsMixin:
    """Receiving, verifying, applying and acking commands; mixed into ``Runtime``."""

    if TYPE_CHECKING:  # what the runtime provides
        config: RuntimeConfig
        name: str
        stats: Counter[str]
        last_action: str
        actions_log: deque[tuple[float, float, str]]
        reclaim: ReclaimRegistry
        reclaim_hook: ReclaimHook
        controller: Controller
        meter: CostMeter
        effects: EffectTracker
        _client: Connection | None
        _keys: Keys
        _outbox: deque[str | bytes]
        _verifier: CommandVerifier | None

        def _seal(self, body: str) -> str | bytes: ...
        def _flush(self) -> None: ...
        def _log_once(self, key: str, msg: str, *args: object) -> None: ...

    def _on_command(self, raw: bytes) -> None:
        """One message from the command channel: refused (counted; acked when authentic)
        or applied and acked with what it freed."""
        received = time.time()
        if raw is TOO_LARGE or len(raw) > MAX_COMMAND_BYTES:
            self._refuse("too_large")
            return
        if self._verifier is None:
            from hivemind.swarm.target.envelope import CommandVerifier

            self._verifier = CommandVerifier(self.config.key, self.config.name)
        reason, cmd = self._verifier.check(raw)
        if (
            reason is None
            and cmd is not None
            and any(  # only names this target advertised
                a["kind"] == "reclaim" and self.reclaim.get(a.get("name") or "") is None
                for a in cmd["actions"]
            )
        ):
            reason, self._verifier.refused = "unknown_reclaim", cmd
        if reason is not None or cmd is None:
            self._refuse(reason or "invalid")
            self._ack_refusal(reason or "invalid", received)
            return
        from hivemind.swarm.target.actions import apply_actions

        before_gc = self.meter.snapshot().gc_ms_per_s
        results = apply_actions(
            cmd["actions"],
            self.reclaim,
            self.config.target_mb,
            self.controller.preset,
            self.reclaim_hook.reclaimer,
        )
        applied = time.time()
        freed = sum(int(r["bytes_freed"]) for r in results)
        self.last_action = "+".join(str(r["kind"]) for r in results)
        self.actions_log.append((received, applied, "cmd:" + self.last_action))
        self.stats["commands"] += 1
        duration_ms = sum(float(r["duration_ms"]) for r in results)
        ack: dict[str, object] = {
            "v": SCHEMA_VERSION,
            "ts": applied,
            "kind": "ack",
            "command_id": cmd["id"],
            "decision_id": cmd["decision_id"],
            "target": self.name,
            "ok": all(r["ok"] for r in results),
            "bytes_freed": freed,
            "duration_ms": duration_ms,
            "applied_ts": applied,
            "received_ts": received,
            "sample_ts": float(cmd.get("sample_ts", 0.0)),
            "results": results,
            "caches": self.reclaim_hook.reclaimer.report()["caches"][:16],
            "gc_ms_per_s_before": round(before_gc, 3),
        }
        self._outbox.append(self._seal(json.dumps(ack)))
        previous = self.effects.begin(
            self.last_action,
            freed,
            duration_ms,
            time.monotonic(),
            tag=ack,
        )
        if previous is not None:
            self.stats["effects_cut_short"] += 1
        self._flush()

    def _poll_effect(self, now: float) -> None:
        """Once a command's window has passed: a second ack with its cost to the app."""
        tag = self.effects.pending_tag
        effect = self.effects.poll(now)
        if effect is None or not isinstance(tag, dict):
            return
        follow = dict(tag)
        follow.update(
            ts=time.time(),
            phase="effect",
            gc_ms_per_s_before=round(effect.gc_ms_per_s_before, 3),
            gc_ms_per_s_after=round(effect.gc_ms_per_s_after, 3),
        )
        self._outbox.append(self._seal(json.dumps(follow)))
        self.stats["effects"] += 1
        if self._client is not None:
            self._flush()

    def _ack_refusal(self, reason: str, received: float) -> None:
        """Tell the sender of an authentic command why it did not run (sealed ``ok=False``).

        Only a command whose signature held has ids worth trusting; a forged
        one is counted, never answered.
        """
        cmd = self._verifier.refused if self._verifier is not None else None
        if cmd is None:
            return
        refusal = {
            "v": SCHEMA_VERSION,
            "ts": time.time(),
            "kind": "ack",
            "command_id": cmd["id"],
            "decision_id": cmd["decision_id"],
            "target": self.name,
            "ok": False,
            "received_ts": received,
            "error": reason,
        }
        self._outbox.append(self._seal(json.dumps(refusal)))
        self._flush()

    def _refuse(self, reason: str) -> None:
        self.stats["refused"] += 1
        self.stats[f"refused_{reason}"] += 1
        self._log_once(f"refused_{reason}", "hivemind: refused a command (%s)", reason)
        if self._client is not None:
            with contextlib.suppress(RespError, OSError):
                self._client.call("HINCRBY", self._keys.counters, "refused", 1)
                tkey = self._keys.target_counters(self.name)
                self._client.call("HINCRBY", tkey, "refused", 1)
                self._client.call("HINCRBY", tkey, f"refused_{reason}", 1)
