"""Every Redis key and channel hivemind uses, built in one place.

All keys start ``hm:{namespace}:``. Nobody formats a key string elsewhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

from hivemind.swarm.record import frozen

__all__ = [
    "LATENCY_BUCKETS_MS",
    "NAMESPACE_PATTERN",
    "SAMPLE_SLOTS",
    "Keys",
    "parse_slots",
    "pick_slot",
    "validate_namespace",
]

# The sample stream is cut into this many channels, dealt out to the benchmarkers.
SAMPLE_SLOTS = 16


def parse_slots(raw: bytes | str | None) -> list[int]:
    """Slots from a ``bench_slots``/``sample_nodes`` value ("0,2,4"); bad entries dropped."""
    if not raw:
        return []
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    out = []
    for item in text.split(","):
        if item.strip().isdigit() and int(item) < SAMPLE_SLOTS:
            out.append(int(item))
    return out


@lru_cache(maxsize=64)
def _crc32(text: str) -> int:
    """``zlib.crc32`` of ``text`` (UTF-8), bit by bit: no libz mapped into a guarded process."""
    crc = 0xFFFFFFFF
    for byte in text.encode("utf-8", "replace"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def pick_slot(target: str, node_slots: bytes | str | None = None) -> int:
    """The slot ``target`` publishes its samples on.

    One of its node's slots (``node_slots``, from ``hm:{ns}:sample_nodes``)
    when a benchmarker runs on its node, else the slot its name hashes to.
    """
    digest = _crc32(target)
    slots = parse_slots(node_slots)
    return slots[digest % len(slots)] if slots else digest % SAMPLE_SLOTS


LATENCY_BUCKETS_MS: tuple[float, ...] = (5, 10, 20, 40, 60, 100, 150, 250, 500, 1000, 2500)

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_namespace(ns: str) -> str:
    """Return ``ns`` if it is a valid namespace, else raise ``ValueError``."""
    if not NAMESPACE_PATTERN.match(ns):
        raise ValueError(
            f"namespace {ns!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return ns


@frozen
class Keys:
    """Key and channel names for one namespace."""

    ns: str

    # --- pub/sub channels -------------------------------------------------
    @property
    def samples(self) -> str:
        return f"hm:{self.ns}:samples"

    def sample_channel(self, slot: int) -> str:
        """Channel: the samples of one slot (see :func:`pick_slot`)."""
        return f"hm:{self.ns}:samples:{slot}"

    @property
    def bench_slots(self) -> str:
        """Hash: benchmarker actor name -> the sample slots it reads ("0,2,4")."""
        return f"hm:{self.ns}:bench_slots"

    @property
    def sample_nodes(self) -> str:
        """Hash: node label -> the sample slots of the benchmarkers on that node."""
        return f"hm:{self.ns}:sample_nodes"

    @property
    def events(self) -> str:
        return f"hm:{self.ns}:events"

    def decisions(self, owner: str) -> str:
        """Channel: sealed decisions for one optimizer (``gc_optimizer``, ``widget_optimizer``)."""
        return f"hm:{self.ns}:decisions:{owner}"

    @property
    def acks(self) -> str:
        return f"hm:{self.ns}:acks"

    @property
    def control(self) -> str:
        """Channel: instructions to the coordinator (restore a session)."""
        return f"hm:{self.ns}:control"

    def cmd(self, target: str) -> str:
        return f"hm:{self.ns}:cmd:{target}"

    # --- swarm state ------------------------------------------------------
    @property
    def swarm(self) -> str:
        """Hash: the running swarm's pid, Redis mode, level, session, state."""
        return f"hm:{self.ns}:swarm"

    def agent(self, name: str) -> str:
        """Hash with a TTL: one agent's latest heartbeat."""
        return f"hm:{self.ns}:agent:{name}"

    @property
    def agent_restarts(self) -> str:
        """Hash: agent name -> restarts since this swarm came up."""
        return f"hm:{self.ns}:agents:restarts"

    @property
    def restarts(self) -> str:
        """Hash: component (``redis``, ``ray_head``, a role, ``supervisor``) -> restarts."""
        return f"hm:{self.ns}:restarts"

    def target(self, name: str) -> str:
        """Hash with a TTL: one guarded process's latest state."""
        return f"hm:{self.ns}:target:{name}"

    @property
    def target_pattern(self) -> str:
        return f"hm:{self.ns}:target:*"

    @property
    def bus_errors(self) -> str:
        """Hash: channel -> malformed messages dropped."""
        return f"hm:{self.ns}:bus:errors"

    @property
    def counters(self) -> str:
        """Hash: swarm-wide counters.

        Fields: ``samples``, ``events``, ``decisions``, ``commands``, ``acks``,
        ``bytes_freed``, ``refused`` (commands a target refused), ``timeouts``
        (commands no ack came back for in time).
        """
        return f"hm:{self.ns}:counters"

    def target_counters(self, name: str) -> str:
        """Hash: one target's counters (same fields as :attr:`counters`, plus
        ``refused_<reason>``), written where each thing happens."""
        return f"hm:{self.ns}:tcounters:{name}"

    @property
    def latency_raw(self) -> str:
        """List (capped, newest first): JSON ``[total, sampling, decision, command, apply]``
        ms, then the decision's id."""
        return f"hm:{self.ns}:latency:raw"

    @property
    def coordinator_state(self) -> str:
        """Hash: target -> the coordinator's JSON history of it (survives a restart)."""
        return f"hm:{self.ns}:coord:targets"

    @property
    def latency(self) -> str:
        """Hash: reaction latency histogram (sample crossing -> command applied).

        Fields: ``le_<bound ms>`` (non-cumulative count per bucket of
        :data:`LATENCY_BUCKETS_MS`, ``le_inf`` last), ``sum_ms``, ``count``.
        """
        return f"hm:{self.ns}:latency"

    # --- sessions ---------------------------------------------------------
    @property
    def sessions(self) -> str:
        """Sorted set: session id scored by last activity."""
        return f"hm:{self.ns}:sessions"

    def session(self, session_id: str) -> str:
        return f"hm:{self.ns}:session:{session_id}"

    def session_events(self, session_id: str) -> str:
        return f"hm:{self.ns}:session:{session_id}:events"

    def session_learned(self, session_id: str) -> str:
        return f"hm:{self.ns}:session:{session_id}:learned"

    def session_memory(self, session_id: str) -> str:
        """Stream: the session's memory series, one entry every few seconds.

        Fields ``ts`` and ``data``: JSON ``{target: [peak rss MB, target MB, level rank]}``
        over the interval (written by the benchmarker, read by ``session plot``).
        """
        return f"hm:{self.ns}:session:{session_id}:memory"

    def session_reclaim(self, session_id: str) -> str:
        """Hash: target -> JSON of the caches it found and what its last reclaims freed."""
        return f"hm:{self.ns}:session:{session_id}:reclaim"

    def session_dedup(self, session_id: str) -> str:
        return f"hm:{self.ns}:session:{session_id}:dedup"

    @property
    def hooks_current(self) -> str:
        """String: the session hooks write into when none is named or running."""
        return f"hm:{self.ns}:hooks:current"

    def memory(self, memory_ns: str) -> str:
        """Hash: memory key -> JSON entry (``post-edit --memory-key``)."""
        return f"hm:{self.ns}:memory:{memory_ns}"

    @property
    def memory_pattern(self) -> str:
        """SCAN pattern matching every memory namespace's hash."""
        return f"hm:{self.ns}:memory:*"

    def memory_ns_of(self, key: str) -> str:
        """The memory namespace of a key built by :meth:`memory`."""
        return key.removeprefix(f"hm:{self.ns}:memory:")
