"""Tables of what a target found to reclaim and what its reclaims gave back.

``swarm status`` and ``session show`` both print them from the same report
(a target's ``reclaim`` status field, or a session's stored copy): the
caches with entries, estimated size, hit rate and cost, then each recent
reclaim with what it was expected to free and what RSS says it freed.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from hivemind.swarm.safe_text import inert

__all__ = ["reclaim_report", "reclaim_tables"]

_MB = 2**20


def reclaim_report(raw: str) -> dict[str, Any]:
    """A target's ``reclaim`` status field (JSON) as a dict; ``{}`` if empty or not one."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _mb(value: Any) -> str:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return "?"
    return "?" if n < 0 else f"{n / _MB:.2f}"


def _rate(value: Any) -> str:
    try:
        r = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if r < 0 else f"{r:.0%}"


def reclaim_tables(target: str, report: dict[str, Any]) -> list[Table]:
    """Up to two tables (caches found, last reclaims); empty when the report has neither."""
    tables = []
    caches = [c for c in report.get("caches", []) if isinstance(c, dict)]
    if caches:
        t = Table(
            "cache", "entries", "est MB", "hit rate", "cost", "keep",
            box=None, title=f"{inert(target)}: caches found",
        )  # fmt: skip
        for c in caches:
            t.add_row(
                inert(c.get("name", "?")),
                inert(c.get("entries", "?")),
                _mb(c.get("bytes")),
                _rate(c.get("hit_rate")),
                f"{float(c.get('cost', 0)):.2f}",
                "keep" if c.get("keep") else "",
            )
        tables.append(t)
    last = [r for r in report.get("last", []) if isinstance(r, dict)]
    if last:
        t = Table(
            "reclaim", "expected MB", "freed MB", "ms", "ok",
            box=None, title=f"{inert(target)}: last reclaims (freed = RSS before - after)",
        )  # fmt: skip
        for r in last:
            ok = "yes" if r.get("ok") else f"no: {inert(str(r.get('error', ''))[:60])}"
            t.add_row(
                inert(r.get("name") or r.get("kind", "?")),
                _mb(r.get("expected_bytes", -1)),
                _mb(r.get("bytes_freed")),
                f"{float(r.get('duration_ms', 0)):.1f}",
                ok,
            )
        tables.append(t)
    return tables
