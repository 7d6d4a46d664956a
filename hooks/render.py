"""How a session view is shown: plain JSON-ready data, and a few human lines."""

from __future__ import annotations

import time
from typing import Any

from hivemind.coordinator.sessions.store import SessionView, printable

__all__ = ["format_view", "iso_time", "printable_lines", "view_json"]


def iso_time(ts: float) -> str:
    """``ts`` (epoch seconds) as UTC ISO 8601 with milliseconds, e.g. ``...T12:00:00.250Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def view_json(view: SessionView) -> dict[str, Any]:
    """A session view as plain JSON-ready data."""
    return {
        "session_id": view.session_id,
        "level": view.level or "conservative",
        "first_ts": view.first_ts,
        "last_ts": view.last_ts,
        "meta": view.meta,
        "counters": view.counters,
        "settings": view.settings,
        "learned": {
            k: {
                "n": r.n,
                "mean_bytes_freed": r.mean_bytes_freed,
                "mean_ms": r.mean_ms,
                "last_ts": r.last_ts,
            }
            for k, r in view.learned.items()
        },
        "stream_len": view.stream_len,
        "recent": [{"id": e.id, "kind": e.kind, "ts": e.ts, "data": e.data} for e in view.recent],
    }


def format_view(view: SessionView) -> str:
    """A few human lines: what a session holds (control characters shown, not sent)."""
    return printable_lines(_format_view(view))


def printable_lines(text: str) -> str:
    """Every line of ``text`` through :func:`printable` (the line breaks stay)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _format_view(view: SessionView) -> str:
    c = view.counters
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "events") or "none"
    lines = [
        f"session {view.session_id}: {int(c.get('events', 0))} events "
        f"({view.stream_len} kept), level {view.level or 'conservative'}, "
        f"{iso_time(view.first_ts) if view.first_ts else '-'} .. "
        f"{iso_time(view.last_ts) if view.last_ts else '-'}",
        f"  counters: {kinds}",
    ]
    if view.learned:
        best = sorted(view.learned.items(), key=lambda kv: -kv[1].mean_bytes_freed)[:5]
        lines.append(
            "  learned: "
            + ", ".join(
                f"{k} n={r.n} freed~{r.mean_bytes_freed / 1e6:.1f}MB in {r.mean_ms:.1f}ms"
                for k, r in best
            )
        )
    for e in view.recent:
        detail = e.data.get("description") or e.data.get("file") or e.data.get("message") or ""
        lines.append(f"  {iso_time(e.ts)} {printable(e.kind)} {printable(detail)[:80]}".rstrip())
    return "\n".join(lines)
