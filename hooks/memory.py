"""Memory entries written by ``post-edit --memory-key`` and read by ``hivemind memory``.

Each memory namespace is one hash ``hm:{ns}:memory:{memory ns}``: key ->
JSON ``{file, edited_at, edit_id, session_id}``. Reads use ``HSCAN`` so a
large namespace never blocks the server.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.resp import Connection

__all__ = ["MemoryEntry", "memory_get", "memory_list", "memory_namespaces", "memory_search"]

_GLOB = set("*?[")


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """One stored memory entry and where it lives."""

    namespace: str
    key: str
    value: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _s(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _entry(namespace: str, key: str, raw: str) -> MemoryEntry:
    try:
        value = json.loads(raw)
    except ValueError:
        value = {"value": raw}
    return MemoryEntry(namespace, key, value if isinstance(value, dict) else {"value": value})


def memory_namespaces(conn: Connection, keys: Keys) -> list[str]:
    """Every memory namespace that holds at least one entry, sorted."""
    found: set[str] = set()
    cursor = "0"
    while True:
        cursor_raw, batch = conn.call("SCAN", cursor, "MATCH", keys.memory_pattern, "COUNT", 500)
        found.update(keys.memory_ns_of(_s(k)) for k in batch)
        cursor = _s(cursor_raw)
        if cursor == "0":
            return sorted(found)


def _hscan(conn: Connection, hash_key: str, match: str | None = None) -> Iterator[tuple[str, str]]:
    cursor = "0"
    while True:
        args: list[str | int] = ["HSCAN", hash_key, cursor, "COUNT", 500]
        if match:
            args[3:3] = ["MATCH", match]
        cursor_raw, flat = conn.call(*args)
        it = iter(flat)
        for k, v in zip(it, it, strict=False):
            yield _s(k), _s(v)
        cursor = _s(cursor_raw)
        if cursor == "0":
            return


def memory_get(
    conn: Connection, keys: Keys, key: str, namespace: str = "default"
) -> MemoryEntry | None:
    """The entry stored under ``key`` in memory namespace ``namespace``, or ``None``."""
    raw = conn.call("HGET", keys.memory(namespace), key)
    return None if raw is None else _entry(namespace, key, _s(raw))


def memory_list(conn: Connection, keys: Keys, namespace: str | None = None) -> list[MemoryEntry]:
    """Every entry of one memory namespace (all of them when ``None``), sorted by key."""
    spaces = [namespace] if namespace else memory_namespaces(conn, keys)
    out = [_entry(ns, k, v) for ns in spaces for k, v in _hscan(conn, keys.memory(ns))]
    return sorted(out, key=lambda e: (e.namespace, e.key))


def memory_search(
    conn: Connection, keys: Keys, pattern: str, namespace: str | None = None
) -> list[MemoryEntry]:
    """Entries whose key matches ``pattern``.

    A pattern with ``*``, ``?`` or ``[`` is a glob over keys; anything else
    matches as a case-insensitive substring of the key or the stored value.
    """
    spaces = [namespace] if namespace else memory_namespaces(conn, keys)
    out: list[MemoryEntry] = []
    needle = pattern.lower()
    for ns in spaces:
        for k, v in _hscan(conn, keys.memory(ns)):
            hit = (
                fnmatch.fnmatchcase(k, pattern)
                if _GLOB & set(pattern)
                else needle in k.lower() or needle in v.lower()
            )
            if hit:
                out.append(_entry(ns, k, v))
    return sorted(out, key=lambda e: (e.namespace, e.key))
