"""``hivemind top``: the Textual app that puts the other top modules on one screen.

Layout, top to bottom: the health line (:class:`HealthBar`), the table of
guarded processes (:class:`TargetTable`), then the selected target's RSS
against its target (:class:`RssPlot`) beside the feed of decisions and acks
(:class:`FeedView`), and the key bar. Keys: arrows select, Enter opens the
detail, ``s`` sorts, ``p`` pauses, ``q`` quits; the mouse works too.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer

from hivemind.swarm.cli.top.detail import DetailScreen
from hivemind.swarm.cli.top.frame import FeedItem, Frame
from hivemind.swarm.cli.top.source import TopSource
from hivemind.swarm.cli.top.table import TargetTable
from hivemind.swarm.cli.top.widgets import FeedView, HealthBar, RssPlot

__all__ = ["HISTORY_POINTS", "TopApp", "run_top"]

HISTORY_POINTS = 600  # one a second per target: the last ten minutes


class TopApp(App[None]):
    """The live dashboard of the swarm recorded in ``state_dir``."""

    TITLE = "hivemind top"
    CSS = """
    Screen { layout: vertical; }
    #targets { height: 1fr; min-height: 4; }
    #bottom { height: 30%; min-height: 6; border-top: solid $primary; }
    #plot { width: 1fr; }
    #feed { width: 1fr; padding-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("s", "sort", "sort"),
        Binding("p", "pause", "pause"),
    ]

    def __init__(
        self, state_dir: Path, *, period_s: float = 0.25, heartbeat_s: float = 1.0
    ) -> None:
        super().__init__()
        self.state_dir = state_dir
        self.paused = False
        self.frame: Frame | None = None
        self.frames = 0
        self.history: dict[str, deque[tuple[float, int, int]]] = {}
        self.feed: deque[FeedItem] = deque(maxlen=200)
        # kept here: the detail screen, when open, hides them from query_one
        self.health_bar = HealthBar("hivemind top · looking for the swarm…", id="health")
        self.table = TargetTable(id="targets")
        self.plot = RssPlot(id="plot")
        self.feed_view = FeedView(id="feed")
        self.source = TopSource(
            state_dir, self._frame_from_thread, self._event_from_thread,
            period_s=period_s, heartbeat_s=heartbeat_s,
        )  # fmt: skip

    # --- layout -------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield self.health_bar
        yield self.table
        with Horizontal(id="bottom"):
            yield self.plot
            yield self.feed_view
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.source.start()

    def on_unmount(self) -> None:
        self.source.stop()

    # --- data from the reader thread ------------------------------------------
    def _frame_from_thread(self, frame: Frame) -> None:
        with contextlib.suppress(RuntimeError):  # the app already stopped
            self.call_from_thread(self.apply_frame, frame)

    def _event_from_thread(self, items: list[FeedItem]) -> None:
        with contextlib.suppress(RuntimeError):
            self.call_from_thread(self.apply_events, items)

    def apply_frame(self, frame: Frame) -> None:
        """Record ``frame``'s samples and, unless paused, draw it."""
        if not self.is_running:
            return
        for name, row in frame.targets.items():
            hist = self.history.get(name)
            if hist is None:
                hist = self.history[name] = deque(maxlen=HISTORY_POINTS)
            if not hist or hist[-1][0] != row.last_seen:
                hist.append((row.last_seen, row.rss_bytes, row.target_bytes))
        for gone in [n for n in self.history if n not in frame.targets]:
            del self.history[gone]
        if not frame.waiting:
            self.feed = deque(frame.feed, maxlen=200)
        self.frame = frame
        if not self.paused:
            self.draw()

    def apply_events(self, items: list[FeedItem]) -> None:
        """Decisions or acks just arrived: show them in their rows and the feed at once."""
        self.feed.extend(items)
        if self.paused or not self.is_running:
            return
        table = self.table
        for item in items:
            row = table.row(item.target)
            if row is not None:
                if item.kind == "decision":
                    row.decided = item
                elif item.kind == "ack":
                    row.acked = item
                table.update_row(row)
        self.feed_view.show(self.feed)

    def draw(self) -> None:
        """Draw the latest frame on the main screen (and the open detail's plot)."""
        frame = self.frame
        if frame is None:
            return
        self.frames += 1
        health = self.health_bar
        table = self.table
        if frame.waiting:
            health.waiting(frame.message)
            table.show({})
        else:
            health.show(frame.health, paused=self.paused, targets=len(frame.targets),
                        dropped=self.source.dropped)  # fmt: skip
            table.show(frame.targets)
        self.feed_view.show(self.feed)
        selected = table.selected
        self.plot.plot(selected or "", self.history.get(selected or "", ()))
        if isinstance(self.screen, DetailScreen):
            self.screen.plot(self.history.get(self.screen.target, ()))

    # --- keys -----------------------------------------------------------------
    def action_sort(self) -> None:
        name = self.table.next_sort()
        self.notify(f"sorted by {name}", timeout=1.5)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.draw()

    def on_target_table_selected(self, event: TargetTable.Selected) -> None:
        self.open_detail(event.name)

    def on_target_table_highlighted(self, event: TargetTable.Highlighted) -> None:
        self.plot.plot(event.name, self.history.get(event.name, ()))

    def open_detail(self, name: str) -> None:
        """Show target ``name`` in full."""
        if isinstance(self.screen, DetailScreen):
            return
        row = self.table.row(name)
        screen = DetailScreen(name, self.source.detail(name), row)
        self.push_screen(screen)
        screen.call_after_refresh(screen.plot, self.history.get(name, ()))


def run_top(state_dir: Path, *, guard: bool = True, target_mb: float = 128.0) -> None:
    """Run the dashboard in this terminal until the user quits.

    With ``guard`` the dashboard process guards itself (``hivemind.attach``),
    so it appears in its own list as ``hivemind-top-PID``.
    """
    if guard:
        from hivemind.swarm.target.attach import attach

        attach(target_mb, f"hivemind-top-{os.getpid()}", state_dir=state_dir, sample_hz=5.0)
    TopApp(state_dir).run()
