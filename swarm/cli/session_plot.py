"""``hivemind session plot ID --out FILE.png``: memory against target over a session.

:func:`load_plot_data` reads the session's memory series (peak RSS, target
and level per target every few seconds, written by the benchmarker) and its
decisions, acks and time-outs; :func:`build_figure` draws one panel per
target: RSS and target lines, decisions (triangles down, coloured by level)
and acks (triangles up; a red cross for a failed one or a time-out) marked,
and the time spent at each level above ``conservative`` shaded.
:func:`save_png` writes it, refusing to follow a symlink. Needs matplotlib
(the ``charts`` extra); nothing else in hivemind does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from hivemind.coordinator.sessions.recorder import UnknownSessionError
from hivemind.coordinator.sessions.store import decode_events, valid_session_id
from hivemind.swarm.errors import HivemindError, UsageError
from hivemind.swarm.keys import Keys

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PlotData", "TargetSeries", "build_figure", "load_plot_data", "save_png"]

LEVELS = ("conservative", "balanced", "aggressive", "emergency")
LEVEL_COLOURS = {"balanced": "#f2d750", "aggressive": "#f29d38", "emergency": "#e8412c"}
CHUNK = 5000


@dataclass(slots=True)
class TargetSeries:
    """One target over the session: memory points and the marks on them."""

    ts: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    target_mb: list[float] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)  # level rank, 0 = conservative
    decisions: list[tuple[float, float, str]] = field(default_factory=list)  # ts, rss MB, level
    acks: list[tuple[float, int, bool]] = field(default_factory=list)  # ts, bytes freed, ok
    timeouts: list[float] = field(default_factory=list)

    @property
    def peak_mb(self) -> float:
        return max(self.rss_mb, default=0.0)


@dataclass(slots=True)
class PlotData:
    """A session's series per target, and its time origin."""

    session_id: str
    start_ts: float = 0.0
    targets: dict[str, TargetSeries] = field(default_factory=dict)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _xrange_all(client: redis.Redis, key: str) -> list[Any]:
    out: list[Any] = []
    start = "-"
    while True:
        chunk = client.xrange(key, start, "+", count=CHUNK)
        if not chunk:
            return out
        out += chunk
        if len(chunk) < CHUNK:
            return out
        start = "(" + _s(chunk[-1][0])


def load_plot_data(client: redis.Redis, keys: Keys, session_id: str) -> PlotData:
    """Read everything the plot needs; :class:`UnknownSessionError` for an unknown id."""
    if not valid_session_id(session_id):
        raise UsageError(
            f"invalid session id {session_id!r}: use 1-128 letters, digits and _ . : @ -"
        )
    if not client.exists(keys.session(session_id)):
        raise UnknownSessionError(f"unknown session {session_id!r} in namespace {keys.ns}")
    data = PlotData(session_id)
    for _, fields in _xrange_all(client, keys.session_memory(session_id)):
        f = {_s(k): _s(v) for k, v in fields.items()}
        try:
            ts = float(f["ts"])
            points = json.loads(f["data"])
        except (KeyError, ValueError):
            continue
        if not isinstance(points, dict):
            continue
        for name, p in points.items():
            try:
                rss, target, rank = float(p[0]), float(p[1]), int(p[2])
            except (TypeError, ValueError, IndexError):
                continue
            s = data.targets.setdefault(str(name), TargetSeries())
            s.ts.append(ts)
            s.rss_mb.append(rss)
            s.target_mb.append(target)
            s.rank.append(rank)
    for ev in decode_events(_xrange_all(client, keys.session_events(session_id))):
        who = str(ev.data.get("target", ""))
        if not who or ev.kind not in ("decision", "ack", "timeout"):
            continue
        s = data.targets.setdefault(who, TargetSeries())
        if ev.kind == "decision":
            at = float(ev.data.get("rss_mb", 0) or 0)
            s.decisions.append((ev.ts, at, str(ev.data.get("level", ""))))
        elif ev.kind == "ack":
            s.acks.append(
                (ev.ts, int(ev.data.get("bytes_freed", 0) or 0), bool(ev.data.get("ok", True)))
            )
        else:
            s.timeouts.append(ev.ts)
    starts = [s.ts[0] for s in data.targets.values() if s.ts]
    starts += [d[0] for s in data.targets.values() for d in s.decisions]
    data.start_ts = min(starts, default=0.0)
    return data


def _rss_at(s: TargetSeries, ts: float) -> float:
    """The series' RSS nearest before ``ts`` (or the last decision's reading)."""
    best = None
    for t, rss in zip(s.ts, s.rss_mb, strict=True):
        if t > ts:
            break
        best = rss
    if best is None:
        before = [d[1] for d in s.decisions if d[0] <= ts]
        best = before[-1] if before else (s.rss_mb[0] if s.rss_mb else 0.0)
    return best


def _level_spans(s: TargetSeries) -> list[tuple[float, float, int]]:
    """Runs of equal level rank above 0 as ``(start ts, end ts, rank)``."""
    spans: list[tuple[float, float, int]] = []
    for i, rank in enumerate(s.rank):
        end = s.ts[i + 1] if i + 1 < len(s.ts) else s.ts[i]
        if rank <= 0:
            continue
        if spans and spans[-1][2] == rank and spans[-1][1] == s.ts[i]:
            spans[-1] = (spans[-1][0], end, rank)
        else:
            spans.append((s.ts[i], end, rank))
    return spans


def build_figure(data: PlotData, *, max_targets: int = 12) -> Figure:
    """One panel per target (the ``max_targets`` with the highest peaks), x in minutes.

    Every artist carries a ``gid`` saying what it is (``rss``, ``target``,
    ``decisions``, ``acks``, ``failed``, ``level:<name>``), so callers and
    tests can check the content before the figure is saved.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise HivemindError(
            "session plot needs matplotlib: pip install 'hivemind-swarm[charts]'"
        ) from None
    names = sorted(data.targets, key=lambda n: (-data.targets[n].peak_mb, n))[:max_targets]
    if not names:
        raise HivemindError(
            f"session {data.session_id} has no memory readings or decisions to plot"
        )
    fig = Figure(figsize=(10, 0.8 + 2.3 * len(names)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    t0 = data.start_ts

    def x(ts: float) -> float:
        return (ts - t0) / 60

    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        s = data.targets[name]
        for start, end, rank in _level_spans(s):
            level = LEVELS[min(rank, 3)]
            ax.axvspan(
                x(start), x(end), color=LEVEL_COLOURS[level], alpha=0.25, lw=0, gid=f"level:{level}"
            )
        if s.ts:
            ax.plot(
                [x(t) for t in s.ts],
                s.rss_mb,
                color="#1f5fa8",
                lw=1.4,
                label="RSS (peak)",
                gid="rss",
            )
            ax.plot(
                [x(t) for t in s.ts],
                s.target_mb,
                color="#c0392b",
                lw=1.0,
                ls="--",
                label="target",
                gid="target",
            )
        elif s.decisions:  # an older session without a memory series: the decisions' readings
            ax.plot(
                [x(d[0]) for d in s.decisions],
                [d[1] for d in s.decisions],
                color="#1f5fa8",
                lw=0.8,
                marker=".",
                label="RSS at decisions",
                gid="rss",
            )
        if s.decisions:
            ax.scatter(
                [x(d[0]) for d in s.decisions],
                [d[1] for d in s.decisions],
                marker="v",
                s=28,
                c=[LEVEL_COLOURS.get(d[2], "#777777") for d in s.decisions],
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
                label="decisions",
                gid="decisions",
            )
        ok = [a for a in s.acks if a[2]]
        bad = [a[0] for a in s.acks if not a[2]] + s.timeouts
        if ok:
            ax.scatter(
                [x(a[0]) for a in ok],
                [_rss_at(s, a[0]) for a in ok],
                marker="^",
                s=22,
                color="#2e8b57",
                zorder=3,
                label="acks",
                gid="acks",
            )
        if bad:
            ax.scatter(
                [x(t) for t in bad],
                [_rss_at(s, t) for t in bad],
                marker="x",
                s=30,
                color="#c0392b",
                zorder=4,
                label="failed / timed out",
                gid="failed",
            )
        freed = sum(a[1] for a in s.acks) / 2**20
        ax.set_title(
            f"{name}: {len(s.decisions)} decisions, {len(s.acks)} acks, freed {freed:.1f} MB",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("MB")
        top = max([s.peak_mb, *s.target_mb, *(d[1] for d in s.decisions)], default=1.0)
        ax.set_ylim(0, top * 1.3 or 1.0)  # room for the legend above the lines
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, ncols=5)
    axes[-1].set_xlabel("minutes since the session's first reading")
    fig.suptitle(
        f"session {data.session_id}: memory against target "
        "(shaded: balanced yellow, aggressive orange, emergency red)",
        fontsize=10,
    )
    return fig


def save_png(fig: Figure, out: Path) -> int:
    """Write ``fig`` as PNG to ``out``; return its size in bytes.

    Refuses (:class:`UsageError`) to write through a symlink at ``out``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(out, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or out.is_symlink():
            raise UsageError(f"refusing to write the plot through a symlink: {out}") from None
        raise HivemindError(f"cannot write {out}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fig.savefig(fh, format="png")
    with contextlib.suppress(OSError):
        return out.stat().st_size
    return 0
