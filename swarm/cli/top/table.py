"""The table of guarded processes: one row each, drawn line by line, sortable.

:class:`TargetTable` is a Textual ``ScrollView`` using the line API: each
row is rendered to a strip once and kept until its data changes (a cheap
signature is compared first), so a refresh with 100 targets redraws only
the rows that changed and only the visible ones reach the screen. Arrows,
Page Up/Down, Home/End and the mouse move the cursor; Enter (or a click on
the highlighted row) posts :class:`TargetTable.Selected`; a click on the
header changes the sort. The name and last-action columns take the spare
width; from 120 columns on three more columns appear.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from hivemind.swarm.cli.top.frame import TargetRow, human_bytes
from hivemind.swarm.cli.top.widgets import LEVEL_SHORT, LEVEL_STYLE, ratio_style

__all__ = ["SORTS", "WIDE_AT", "Cell", "TargetTable", "line_segments", "row_cells", "short_actions"]

_RANK = {"conservative": 0, "balanced": 1, "aggressive": 2, "emergency": 3}

SORTS: dict[str, tuple[Callable[[TargetRow], Any], bool]] = {
    "rss/target": (lambda r: (r.ratio, r.name), True),
    "level": (lambda r: (_RANK.get(r.level, 4), r.ratio), True),
    "freed": (lambda r: (r.counters.get("bytes_freed", 0.0), r.name), True),
    "name": (lambda r: r.name, False),
}
WIDE_AT = 120
# (label, width); "target" and "last" also get a share of any spare width.
_COLUMNS = (
    ("target", 10),
    ("pid", 7),
    ("rss/target MB", 15),
    ("lvl", 4),
    ("gc%", 4),
    ("p99", 4),
    ("last", 10),
    ("freed", 6),
    ("ok", 2),
)
_WIDE_COLUMNS = (("decided", 18), ("dec/ack", 9), ("freed tot", 9))
_SHORT_ACTIONS = {
    "gc_profile": "gc",
    "collect": "col",
    "evict_caches": "evict",
    "trim_pools": "trim",
    "malloc_trim": "mtrim",
    "emergency": "EMERG",
}
_CURSOR = Style(reverse=True)


def short_actions(text: str) -> str:
    """``gc_profile+malloc_trim`` -> ``gc+mtrim`` (reclaim actions by their own name)."""
    parts = []
    for part in text.split("+"):
        kind, _, arg = part.partition(":")
        parts.append(arg if kind == "reclaim" and arg else _SHORT_ACTIONS.get(kind, kind))
    return "+".join(parts)


Cell = list[tuple[str, str]]  # (text, rich style) pieces of one cell


@functools.lru_cache(maxsize=256)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


def _bar(rss: int, target: int, width: int = 6) -> Cell:
    """``████░░ 212/256`` (MB): RSS against the target, coloured by how close it is."""
    ratio = rss / target if target else 0.0
    filled = min(width, round(ratio * width))
    return [
        ("█" * filled, ratio_style(ratio)),
        ("░" * (width - filled), "grey37"),
        (f" {rss >> 20}/{target >> 20}", ""),
    ]


def _cost(row: TargetRow, what: str, fmt: str) -> Cell:
    raw = row.cost(what)
    if raw is None:
        return [("-", "dim")]
    try:
        value = float(raw)
    except ValueError:
        return [(raw[:6], "")]
    if what == "gc_share" and value <= 1.0:
        value *= 100  # a fraction: show percent
    return [(fmt.format(value), "bold red" if what == "gc_share" and value > 10 else "")]


def _gc(row: TargetRow) -> Cell:
    pct = row.gc_percent()
    if pct is None:
        return [("-", "dim")]
    return [(f"{pct:.1f}", "bold red" if pct > 10 else "")]


def _last(row: TargetRow) -> Cell:
    """The last decided actions: ``→`` while unacked, ``✗`` if the ack failed."""
    d, a = row.decided, row.acked
    if d is not None:
        text = short_actions(d.text.split(" (")[0])
        if a is None or a.decision_id != d.decision_id:
            return [("→" + text, "bold")]
        return [(text, "")] if "FAILED" not in a.text else [("✗" + text, "bold red")]
    return [(short_actions(row.last_action or (a.text.split(" freed")[0] if a else "")), "")]


def row_cells(row: TargetRow, *, wide: bool, now: float | None = None) -> list[Cell]:
    """The cells of ``row`` in column order (``wide`` adds the three extra columns)."""
    now = now or time.time()
    feas = row.feasibility()
    cells: list[Cell] = [
        [(row.name, "" if row.alive(now) else "dim strike")],
        [(str(row.pid or "-"), "")],
        _bar(row.rss_bytes, row.target_bytes),
        [(LEVEL_SHORT.get(row.level, row.level[:4]), LEVEL_STYLE.get(row.level, ""))],
        _gc(row),
        _cost(row, "pause_p99_ms", "{:.0f}"),
        _last(row),
        [(human_bytes(row.acked.bytes_freed) if row.acked else "-", "")],
        [(feas, "bold red" if feas == "NO" else ("green" if feas == "ok" else "dim"))],
    ]
    if wide:
        d = row.decided
        decided: Cell = [("-", "dim")]
        if d is not None:
            decided = [
                (f"{max(0.0, now - d.ts):.0f}s ", "dim"),
                (LEVEL_SHORT.get(d.level, d.level), LEVEL_STYLE.get(d.level, "")),
            ]
        c = row.counters
        cells += [
            decided,
            [(f"{c.get('decisions', 0):.0f}/{c.get('acks', 0):.0f}", "")],
            [(human_bytes(c.get("bytes_freed", 0.0)), "")],
        ]
    return cells


def line_segments(cells: list[Cell], widths: tuple[int, ...], base: str = "") -> list[Segment]:
    """One table line: each cell cropped (ending in ``…``) or padded to its width."""
    out = [Segment(" ", _style(base))]
    for i, (cell, width) in enumerate(zip(cells, widths, strict=False)):
        if i:
            out.append(Segment(" "))
        total = sum(len(t) for t, _ in cell)
        budget = width if total <= width else width - 1
        spec = base
        for text, piece_spec in cell:
            if budget <= 0:
                break
            spec = f"{base} {piece_spec}".strip()
            piece = text[:budget]
            out.append(Segment(piece, _style(spec)))
            budget -= len(piece)
        if total > width:
            out.append(Segment("…", _style(spec)))
        elif total < width:
            out.append(Segment(" " * (width - total)))
    return out


def _signature(row: TargetRow, wide: bool, now: float) -> tuple[Any, ...]:
    """Everything a row's cells depend on, cheap to build and compare."""
    d, a = row.decided, row.acked
    return (
        row.pid,
        row.rss_bytes >> 20,
        row.target_bytes >> 20,
        row.level,
        row.last_action,
        row.alive(now),
        tuple(sorted(row.extra.items())) if row.extra else (),
        (d.decision_id, d.ts) if d else None,
        (a.decision_id, a.ts) if a else None,
        int(now - d.ts) if (wide and d) else 0,
        tuple(sorted(row.counters.items())) if wide else (),
    )


class TargetTable(ScrollView, can_focus=True):
    """Guarded processes, one row each; see the module docstring."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "cursor(-1000000)", show=False),
        Binding("end", "cursor(1000000)", show=False),
        Binding("enter", "select", "detail"),
    ]
    DEFAULT_CSS = "TargetTable { height: 1fr; }"

    class Highlighted(Message):
        """The cursor moved to target ``name``."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    class Selected(Message):
        """Enter (or a second click) on target ``name``."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort_name = "rss/target"
        self.order: list[str] = []
        self.cursor = 0
        self.wide = False
        self._rows: dict[str, TargetRow] = {}
        self._strips: dict[str, tuple[tuple[Any, ...], Strip]] = {}
        self._widths: tuple[int, ...] = ()
        self._header = Strip.blank(0)
        self._layout_key: tuple[Any, ...] = ()
        self._sigs: list[tuple[Any, ...]] = []

    # --- data -------------------------------------------------------------------
    @property
    def selected(self) -> str | None:
        """The name of the highlighted target, if any."""
        return self.order[self.cursor] if 0 <= self.cursor < len(self.order) else None

    def row(self, name: str) -> TargetRow | None:
        """The latest data of target ``name``."""
        return self._rows.get(name)

    def next_sort(self) -> str:
        """Switch to the next sort order; return its name."""
        names = list(SORTS)
        self.sort_name = names[(names.index(self.sort_name) + 1) % len(names)]
        self._header = Strip.blank(0)
        self.show(self._rows)
        return self.sort_name

    def show(self, rows: dict[str, TargetRow]) -> None:
        """Show ``rows``: targets come and go, changed rows are redrawn, the cursor
        stays on its target."""
        selected = self.selected
        self._rows = rows
        key_fn, reverse = SORTS[self.sort_name]
        self.order = [r.name for r in sorted(rows.values(), key=key_fn, reverse=reverse)]
        for gone in [n for n in self._strips if n not in rows]:
            del self._strips[gone]
        if selected in rows:
            self.cursor = self.order.index(selected)
        self.cursor = max(0, min(self.cursor, len(self.order) - 1))
        size = Size(self.size.width, len(self.order) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        # Repaint only what changed on screen (each hash changes once a second): the
        # whole table when the order, cursor or scroll moved, else just the changed lines.
        now = time.time()
        top = self.scroll_offset.y
        seen = self.order[top : top + self.size.height]
        layout = (self.cursor, self.sort_name, top, tuple(seen), self.size)
        sigs = [_signature(rows[n], self.wide, now) for n in seen]
        if layout != self._layout_key:
            self._layout_key, self._sigs = layout, sigs
            self._header = Strip.blank(0)
            self.refresh()
            return
        for i, sig in enumerate(sigs):
            if i >= len(self._sigs) or sig != self._sigs[i]:
                self.refresh(Region(0, i + 1, self.size.width, 1))
        self._sigs = sigs

    def update_row(self, row: TargetRow) -> None:
        """Redraw ``row`` now (a decision or ack just arrived for it)."""
        if row.name not in self._rows:
            return
        self._rows[row.name] = row
        index = self.order.index(row.name)
        y = index - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))  # that line only

    # --- drawing ----------------------------------------------------------------
    def _layout(self, width: int) -> tuple[int, ...]:
        self.wide = width >= WIDE_AT
        cols = _COLUMNS + (_WIDE_COLUMNS if self.wide else ())
        widths = [w for _, w in cols]
        spare = max(0, width - 1 - sum(widths) - (len(widths) - 1) - 1)
        widths[0] += spare * 2 // 3
        widths[6] += spare - spare * 2 // 3
        return tuple(widths)

    def _line(self, cells: list[Cell], style: str = "") -> Strip:
        segments = line_segments(cells, self._widths, style)
        return Strip(segments, sum(len(s.text) for s in segments))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._layout(width)
        if widths != self._widths:
            self._widths, self._strips, self._header = widths, {}, Strip.blank(0)
        if y == 0:
            if not self._header.cell_length:
                cols = _COLUMNS + (_WIDE_COLUMNS if self.wide else ())
                labels: list[Cell] = [[(label, "")] for label, _ in cols]
                short = {"rss/target": "rss", "level": "lvl"}.get(self.sort_name, self.sort_name)
                labels[0] = [(f"target ({len(self.order)}) ▼{short}", "")]
                self._header = self._line(labels, "bold")
            return self._header.crop_extend(0, width, Style())
        index = self.scroll_offset.y + y - 1
        if not 0 <= index < len(self.order):
            return Strip.blank(width)
        name = self.order[index]
        row = self._rows[name]
        now = time.time()
        sig = _signature(row, self.wide, now)
        cached = self._strips.get(name)
        if cached is None or cached[0] != sig:
            cached = (sig, self._line(row_cells(row, wide=self.wide, now=now)))
            self._strips[name] = cached
        strip = cached[1].crop_extend(0, width, Style())
        if index == self.cursor:
            strip = strip.apply_style(_CURSOR)
        return strip

    # --- keys and mouse -----------------------------------------------------------
    def _move_to(self, index: int) -> None:
        if not self.order:
            return
        self.cursor = max(0, min(index, len(self.order) - 1))
        visible = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)
        self.refresh()
        self.post_message(self.Highlighted(self.order[self.cursor]))

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, pages: int) -> None:
        self._move_to(self.cursor + pages * max(1, self.scrollable_content_region.height - 2))

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self.selected))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            self.app.notify(f"sorted by {self.next_sort()}", timeout=1.5)
            return
        index = self.scroll_offset.y + event.y - 1
        if not 0 <= index < len(self.order):
            return
        if index == self.cursor:
            self.action_select()
        else:
            self._move_to(index)
