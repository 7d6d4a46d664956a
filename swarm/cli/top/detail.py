"""The detail view of one target: its memory plot, timeline, learned table and caches.

Opened with Enter (or a click on the highlighted row); Escape goes back.
Its data comes from :meth:`TopSource.detail` when it opens (the session's
events for this target, the learned table's rows for it, the target's
hash) and the plot follows the live frames while it is open.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from hivemind.swarm.cli.top.frame import TargetRow, human_bytes
from hivemind.swarm.cli.top.source import TargetDetail
from hivemind.swarm.cli.top.widgets import LEVEL_STYLE, RssPlot
from hivemind.swarm.observe.reclaim_view import reclaim_report, reclaim_tables

__all__ = ["DetailScreen", "render_detail"]


def _when(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def render_detail(d: TargetDetail | None, row: TargetRow | None) -> Group:
    """The detail's text: fields, discovered caches, learned table, timeline."""
    if d is None:
        return Group(Text("no swarm connected", style="bold yellow"))
    parts: list[Text | Table] = []
    f = d.fields
    head = Text(f"{d.name}", style="bold")
    head.append(f"  pid {f.get('pid', '-')}  level ")
    lvl = f.get("level", "-")
    head.append(lvl, style=LEVEL_STYLE.get(lvl, ""))
    c = d.counters
    head.append(
        f"  decisions {c.get('decisions', '0')}  acks {c.get('acks', '0')}"
        f"  freed {human_bytes(float(c.get('bytes_freed', 0) or 0))}"
        f"  timeouts {c.get('timeouts', '0')}"
    )
    parts.append(head)
    shown = {"name", "pid", "level", "rss_bytes", "target_bytes", "last_seen", "caches", "reclaim"}
    other = {k: v for k, v in f.items() if k not in shown and k != "discovered_caches"}
    if other:
        parts.append(
            Text("fields: " + ", ".join(f"{k}={v[:40]}" for k, v in sorted(other.items())))
        )
    caches = row.caches() if row is not None else []
    report = reclaim_report(f.get("reclaim", ""))
    if report:  # the runtime's reclaim report: caches found and what reclaims gave back
        tables = reclaim_tables(d.name, report)
        parts += tables or [
            Text(f"discovered caches: none found ({report.get('scans', 0)} scans)", style="dim")
        ]
    elif caches:
        t = Table("cache", "size", "hits", "misses", box=None, title="discovered caches")
        for cache in caches[:20]:
            size = cache.get("bytes", cache.get("size_bytes", cache.get("size", "")))
            t.add_row(
                str(cache.get("name", "?")),
                human_bytes(float(size)) if isinstance(size, int | float) else str(size),
                str(cache.get("hits", "")),
                str(cache.get("misses", "")),
            )
        parts.append(t)
    else:
        parts.append(Text("discovered caches: none reported", style="dim"))
    if d.learned:
        t = Table("action", "n", "mean freed", "mean ms", box=None, title="learned (this session)")
        for key, e in sorted(d.learned.items(), key=lambda kv: -kv[1].mean_bytes_freed):
            t.add_row(key, str(e.n), human_bytes(e.mean_bytes_freed), f"{e.mean_ms:.1f}")
        parts.append(t)
    else:
        parts.append(Text("learned: nothing yet for this target", style="dim"))
    if d.timeline:
        t = Table("time", "kind", "level", "detail", box=None, title="timeline (newest first)")
        for it in d.timeline:
            t.add_row(
                _when(it.ts), it.kind, Text(it.level, style=LEVEL_STYLE.get(it.level, "")), it.text
            )
        parts.append(t)
    else:
        parts.append(Text("timeline: no decisions for this target in this session", style="dim"))
    return Group(*parts)


class DetailScreen(Screen[None]):
    """One target in full; Escape returns to the list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.quit", "quit"),
    ]
    DEFAULT_CSS = """
    DetailScreen #dplot { height: 9; border-bottom: solid $primary; }
    DetailScreen #dbody { height: 1fr; }
    """

    def __init__(self, name: str, detail: TargetDetail | None, row: TargetRow | None) -> None:
        super().__init__()
        self.target = name
        self.detail = detail
        self.row = row

    def compose(self) -> ComposeResult:
        yield RssPlot(id="dplot")
        with VerticalScroll(id="dbody"):
            yield Static(render_detail(self.detail, self.row), id="dtext")
        yield Footer()

    def plot(self, points: Sequence[tuple[float, int, int]]) -> None:
        """Follow the live memory of this target."""
        self.query_one("#dplot", RssPlot).plot(self.target, points)
