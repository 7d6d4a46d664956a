"""The table of guarded processes: one row each, updated in place, sortable.

:class:`TargetTable` is a Textual ``DataTable`` (arrows, mouse, Enter) that
takes a dict of :class:`TargetRow` per frame: rows appear and disappear
with the targets, only cells whose text changed are redrawn, and the
selected target stays selected through re-sorting. At 120 columns and more
it shows wider names and three more columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from hivemind.swarm.cli.top.frame import TargetRow, human_bytes
from hivemind.swarm.cli.top.widgets import LEVEL_SHORT, LEVEL_STYLE, rss_bar

__all__ = ["SORTS", "TargetTable", "row_cells", "short_actions"]

_RANK = {"conservative": 0, "balanced": 1, "aggressive": 2, "emergency": 3}

SORTS: dict[str, tuple[Callable[[TargetRow], Any], bool]] = {
    "name": (lambda r: r.name, False),
    "rss/target": (lambda r: (r.ratio, r.name), True),
    "level": (lambda r: (_RANK.get(r.level, 4), r.ratio), True),
    "freed": (lambda r: (r.counters.get("bytes_freed", 0.0), r.name), True),
}

# (key, label, width narrow, width wide); the last three appear only when wide.
_COLUMNS = (
    ("target", "target", 10, 24),
    ("pid", "pid", 6, 7),
    ("rss", "rss/target MB", 15, 17),
    ("level", "lvl", 4, 4),
    ("gc", "gc%", 4, 5),
    ("p99", "p99", 4, 6),
    ("last", "last", 10, 22),
    ("freed", "freed", 5, 7),
    ("ok", "ok", 2, 3),
)
_WIDE_COLUMNS = (
    ("decided", "decided", 0, 22),
    ("count", "dec/ack", 0, 9),
    ("total", "freed tot", 0, 9),
)
WIDE_AT = 120


_SHORT_ACTIONS = {
    "gc_profile": "gc",
    "collect": "col",
    "evict_caches": "evict",
    "trim_pools": "trim",
    "malloc_trim": "mtrim",
    "emergency": "EMERG",
}


def short_actions(text: str) -> str:
    """``gc_profile+malloc_trim`` -> ``gc+mtrim`` (reclaim actions by their own name)."""
    parts = []
    for part in text.split("+"):
        kind, _, arg = part.partition(":")
        parts.append(arg if kind == "reclaim" and arg else _SHORT_ACTIONS.get(kind, kind))
    return "+".join(parts)


def _cost(row: TargetRow, what: str, fmt: str) -> Text:
    raw = row.cost(what)
    if raw is None:
        return Text("-", style="dim")
    try:
        value = float(raw)
    except ValueError:
        return Text(raw[:6])
    if what == "gc_share" and value <= 1.0:
        value *= 100  # a fraction: show percent
    return Text(fmt.format(value), style="bold red" if what == "gc_share" and value > 10 else "")


def row_cells(row: TargetRow, *, wide: bool, now: float | None = None) -> list[Text]:
    """The cells of ``row`` in column order (``wide`` adds the three extra columns)."""
    now = now or time.time()
    alive = row.alive(now)
    name = Text(row.name, style="" if alive else "dim strike")
    level = Text(LEVEL_SHORT.get(row.level, row.level[:4]), style=LEVEL_STYLE.get(row.level, ""))
    last = row.last_action or (row.acked.text.split(" freed")[0] if row.acked else "")
    if row.decided is not None and (row.acked is None or row.decided.ts > row.acked.ts):
        last = "→" + short_actions(row.decided.text.split(" (")[0])  # decided, not acked
    else:
        last = short_actions(last)
    freed = Text(human_bytes(row.acked.bytes_freed) if row.acked else "-")
    feas = row.feasibility()
    cells = [
        name,
        Text(str(row.pid or "-")),
        rss_bar(row.rss_bytes, row.target_bytes),
        level,
        _cost(row, "gc_share", "{:.1f}"),
        _cost(row, "pause_p99_ms", "{:.0f}"),
        Text(last),
        freed,
        Text(feas, style="bold red" if feas == "NO" else ("green" if feas == "ok" else "dim")),
    ]
    if wide:
        d = row.decided
        decided = Text("-", style="dim")
        if d is not None:
            decided = Text(f"{max(0.0, now - d.ts):.0f}s ", style="dim")
            decided.append(LEVEL_SHORT.get(d.level, d.level), style=LEVEL_STYLE.get(d.level, ""))
            decided.append(" " + short_actions(d.text.split(" (")[0]))
        c = row.counters
        cells += [
            decided,
            Text(f"{c.get('decisions', 0):.0f}/{c.get('acks', 0):.0f}"),
            Text(human_bytes(c.get("bytes_freed", 0.0))),
        ]
    return cells


class TargetTable(DataTable[Text]):
    """Guarded processes, one row each; see the module docstring."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.sort_name = "rss/target"
        self.wide = False
        self.order: list[str] = []
        self._shown: dict[str, list[Text]] = {}
        self._rows: dict[str, TargetRow] = {}

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width >= WIDE_AT)

    def _set_columns(self, wide: bool) -> None:
        self.wide = wide
        self.clear(columns=True)
        self._shown.clear()
        self.order = []
        cols = _COLUMNS + (_WIDE_COLUMNS if wide else ())
        for key, label, narrow, w in cols:
            self.add_column(label, key=key, width=w if wide else narrow)

    @property
    def selected(self) -> str | None:
        """The name of the highlighted target, if any."""
        if not self.order or not 0 <= self.cursor_row < len(self.order):
            return None
        return self.order[self.cursor_row]

    def next_sort(self) -> str:
        """Switch to the next sort order; return its name."""
        names = list(SORTS)
        self.sort_name = names[(names.index(self.sort_name) + 1) % len(names)]
        self.show(self._rows, force_order=True)
        return self.sort_name

    def show(self, rows: dict[str, TargetRow], *, force_order: bool = False) -> None:
        """Make the table show ``rows`` (added, removed and changed cells only)."""
        self._rows = rows
        wide = self.app.size.width >= WIDE_AT
        if wide != self.wide:
            self._set_columns(wide)
        key_fn, reverse = SORTS[self.sort_name]
        order = [r.name for r in sorted(rows.values(), key=key_fn, reverse=reverse)]
        now = time.time()
        if order != self.order or force_order:
            selected = self.selected
            self.clear()
            self._shown.clear()
            for name in order:
                cells = row_cells(rows[name], wide=self.wide, now=now)
                self.add_row(*cells, key=name)
                self._shown[name] = cells
            self.order = order
            if selected in order:
                self.move_cursor(row=order.index(selected), animate=False)
            return
        keys = [c[0] for c in _COLUMNS + (_WIDE_COLUMNS if self.wide else ())]
        for name in order:
            self.update_row(rows[name], keys, now)

    def update_row(self, row: TargetRow, keys: list[str] | None = None, now: float = 0.0) -> None:
        """Redraw the cells of ``row`` that changed (no-op for an unknown target)."""
        old = self._shown.get(row.name)
        if old is None:
            return
        self._rows[row.name] = row
        keys = keys or [c[0] for c in _COLUMNS + (_WIDE_COLUMNS if self.wide else ())]
        cells = row_cells(row, wide=self.wide, now=now or time.time())
        for i, cell in enumerate(cells):
            if cell != old[i]:
                self.update_cell(row.name, keys[i], cell)
        self._shown[row.name] = cells

    def row(self, name: str) -> TargetRow | None:
        """The latest data of target ``name``."""
        return self._rows.get(name)
