"""The dashboard's small widgets: the health line, the RSS-vs-target plot, the feed.

Each renders from plain data handed to it (a :class:`Health`, a list of
points, a list of :class:`FeedItem`), never from Redis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from hivemind.swarm.cli.top.frame import FeedItem, Health

__all__ = [
    "LEVEL_SHORT",
    "LEVEL_STYLE",
    "FeedView",
    "HealthBar",
    "RssPlot",
    "ratio_style",
    "rss_bar",
]

LEVEL_STYLE = {
    "conservative": "green",
    "balanced": "yellow",
    "aggressive": "dark_orange",
    "emergency": "bold red",
}
LEVEL_SHORT = {"conservative": "cons", "balanced": "bal", "aggressive": "aggr", "emergency": "EMER"}
_BLOCKS = " ▁▂▃▄▅▆▇█"


def ratio_style(ratio: float) -> str:
    """Colour for RSS/target: green, yellow from 70 %, orange from 90 %, red over."""
    if ratio >= 1.0:
        return "bold red"
    if ratio >= 0.9:
        return "dark_orange"
    if ratio >= 0.7:
        return "yellow"
    return "green"


def rss_bar(rss: int, target: int, width: int = 6) -> Text:
    """``████░░ 212/256`` (MB): RSS against the target, coloured by how close it is."""
    ratio = rss / target if target else 0.0
    filled = min(width, round(ratio * width))
    text = Text("█" * filled, style=ratio_style(ratio))
    text.append("░" * (width - filled), style="grey37")
    text.append(f" {rss / 2**20:.0f}/{target / 2**20:.0f}")
    return text


def _age(ts: float, now: float) -> str:
    s = max(0.0, now - ts)
    return f"{s:.0f}s" if s < 60 else f"{s / 60:.0f}m"


class HealthBar(Widget):
    """Namespace, session, level, agents, Redis, Ray, restarts; then what is degraded.

    Its height follows its text (wrapped to the width), set only when it
    changes, so a refresh does not re-lay out the screen.
    """

    DEFAULT_CSS = "HealthBar { height: 1; }"

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = Text(text)

    def render(self) -> Text:
        return self.text

    def update(self, text: Text) -> None:
        """Show ``text``; re-lay out only when the number of lines changes."""
        if text == self.text:
            return
        self.text = text
        width = max(1, self.size.width or self.app.size.width)
        lines = sum(max(1, -(-len(part) // width)) for part in text.plain.split("\n"))
        lines = min(3, lines)
        if self.styles.height is None or self.styles.height.value != lines:
            self.styles.height = lines
        self.refresh()

    def show(self, h: Health, *, paused: bool, targets: int, dropped: int = 0) -> None:
        """Redraw from ``h``."""
        now = time.time()
        line = Text("hivemind ", style="bold")
        if paused:
            line.append("PAUSED ", style="bold reverse")
        line.append(f"{h.namespace} · session {h.session_id or '-'} · level ")
        line.append(h.level, style=LEVEL_STYLE.get(h.level, "bold red"))
        line.append(" · agents ")
        ok = h.agents_alive == h.agents_total and h.agents_total > 0
        line.append(f"{h.agents_alive}/{h.agents_total}", style="green" if ok else "bold red")
        line.append(f" · targets {targets} · redis {h.redis} · ray {h.ray}")
        line.append(" · restarts ")
        line.append(str(h.restarts), style="bold red" if h.restarts else "")
        line.append(f" · up {_age(now - h.uptime_s, now)}")
        if dropped:
            line.append(f" · dropped {dropped}", style="yellow")
        if h.degraded:
            line.append("\nDEGRADED: " + "; ".join(h.degraded), style="bold red")
        self.update(line)

    def waiting(self, message: str) -> None:
        self.update(Text(f"hivemind top · {message}", style="bold yellow"))


class RssPlot(Static):
    """RSS (bars) against the target (a red line) over the last minutes of one target."""

    DEFAULT_CSS = "RssPlot { height: 100%; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = ""
        self.points: Sequence[tuple[float, int, int]] = ()
        self._key: tuple[object, ...] = ()

    def plot(self, title: str, points: Sequence[tuple[float, int, int]]) -> None:
        """Show ``points`` (``(ts, rss_bytes, target_bytes)``, oldest first)."""
        key = (title, len(points), points[-1] if points else None)
        if key == self._key:
            return  # nothing new: no repaint
        self._key = key
        self.title, self.points = title, points
        self.refresh()

    def render(self) -> Text:
        width = max(8, self.size.width)
        rows = max(1, self.size.height - 1)
        pts = list(self.points)[-width:]
        if not pts:
            return Text(f"{self.title or 'no target selected'}: no samples yet", style="dim")
        top = max(max(p[1] for p in pts), max(p[2] for p in pts)) * 1.1 or 1
        span = pts[-1][0] - pts[0][0]
        last = pts[-1]
        head = Text(f"{self.title} ", style="bold")
        ratio = last[1] / last[2] if last[2] else 0.0
        head.append(f"{last[1] / 2**20:.0f}", style=ratio_style(ratio))
        head.append(f"/{last[2] / 2**20:.0f} MB · {span:.0f}s", style="dim")
        head.truncate(width, overflow="ellipsis")
        lines = [head]
        for r in range(rows - 1, -1, -1):  # top row first
            lo = top * r / rows
            cell_h = top / rows
            line = Text()
            for _, rss, target in pts:
                on_target = lo <= target < lo + cell_h
                level = (rss - lo) / cell_h
                ch = _BLOCKS[max(0, min(8, int(level * 8)))] if level < 1 else "█"
                style = ratio_style(rss / target if target else 0)
                if on_target and ch == " ":
                    line.append("─", style="red")
                else:
                    line.append(ch, style=style + (" on grey23" if on_target else ""))
            lines.append(line)
        return Text("\n").join(lines)


class FeedView(Static):
    """The latest decisions and acks, newest at the bottom."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: Sequence[FeedItem] = ()
        self._key: tuple[object, ...] = ()
        self._painted = 0.0

    def show(self, items: Sequence[FeedItem]) -> None:
        """Show ``items``; repaint when one came (at most four times a second) or once a
        second for the ages; the rows show each event at once."""
        now = time.monotonic()
        key = (len(items), items[-1].ts if items else 0.0, int(time.time()))
        if key == self._key or now - self._painted < 0.25:
            return
        self._painted = now
        self._key = key
        self.items = items
        self.refresh()

    def render(self) -> Text:
        rows = max(1, self.size.height)
        now = time.time()
        items = list(self.items)[-rows:]
        if not items:
            return Text("no decisions yet", style="dim")
        out = []
        for it in items:
            line = Text(f"{_age(it.ts, now):>3} ", style="dim")
            line.append(f"{it.target} ", style="bold")
            if it.kind == "decision":
                line.append(
                    LEVEL_SHORT.get(it.level, it.level) + " ", style=LEVEL_STYLE.get(it.level, "")
                )
                line.append(it.text)
            elif it.kind == "ack":
                line.append("ack ", style="cyan")
                line.append(it.text)
            else:
                line.append(it.kind + " ", style="bold red")
                line.append(it.text)
            line.truncate(max(10, self.size.width), overflow="ellipsis")
            out.append(line)
        return Text("\n").join(out)
