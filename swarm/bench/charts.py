"""PNG charts for ``hivemind bench``: memory over time and reaction latency.

Needs matplotlib, an optional extra (``pip install 'hivemind-swarm[charts]'``),
imported only when charts are drawn (Agg backend, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hivemind.swarm.bench.runner import SWARM_NOT_AVAILABLE, BenchResults

__all__ = ["CHARTS_HINT", "write_charts"]

CHARTS_HINT = "charts need matplotlib: pip install 'hivemind-swarm[charts]'"


_LEVEL_COLOURS = {
    "conservative": "tab:green",
    "balanced": "gold",
    "aggressive": "tab:orange",
    "emergency": "tab:red",
}


def write_charts(results: BenchResults, out: Path) -> tuple[list[str], str | None]:
    """PNG charts for each guarded phase; (file names, note). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], CHARTS_HINT
    target = float(results.options["target_mb"])
    files: list[str] = []
    for name in ("swarm", "workload"):
        phase = results.phases.get(name)
        if not phase or phase.get("status") != "ok" or not phase.get("runs"):
            continue
        runs = phase["runs"]
        first: dict[str, dict[str, Any]] = {}
        for r in runs:
            first.setdefault(r["side"], r)
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for side, r in first.items():
            ts = [p[0] for p in r["timeline"]]
            ms = [p[1] for p in r["timeline"]]
            ax.plot(ts, ms, label=side, linewidth=1.4)
            for t, level, _action, freed in r["decisions"]:
                ax.axvline(t, color=_LEVEL_COLOURS.get(level, "grey"), alpha=0.35, linewidth=0.8)
                y = max(ms) if ms else target
                ax.plot([t], [y], marker="v", color=_LEVEL_COLOURS.get(level, "grey"))
                if freed:
                    ax.annotate(f"-{freed / 2**20:.0f} MB", (t, y), fontsize=7, rotation=90)
        ax.axhline(
            target, color="black", linestyle="--", linewidth=1, label=f"target {target:g} MB"
        )
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("RSS MB")
        ax.set_title(f"{phase['workload']}: {phase['guard'].split(':')[0]} (first repeat)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fname = f"{name}_memory.png"
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        files.append(fname)
        lat = [x for r in runs for x in r["latencies_ms"]]
        if lat:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.hist(lat, bins=min(30, max(5, len(lat))), color="tab:blue")
            ax.set_xlabel("reaction latency ms (crossing sample -> reclaim applied)")
            ax.set_ylabel("commands")
            ax.set_title(f"{phase['workload']}: reaction latency, {len(lat)} commands")
            fig.tight_layout()
            fname = f"{name}_latency.png"
            fig.savefig(out / fname, dpi=110)
            plt.close(fig)
            files.append(fname)
    note = None
    if not files:
        note = "No charts: no guarded run produced a timeline."
    swarm = results.phases.get("swarm")
    if swarm and swarm.get("status") == "not_available":
        note = (note + " " if note else "") + f"No swarm-loop charts ({SWARM_NOT_AVAILABLE})."
    return files, note
