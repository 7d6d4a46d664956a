"""The corpus (issue 11): the apps, the watchdog baseline, the harness and its verdicts.

End to end: every corpus app (mypy aside: see the module doc of
``benchmarks/bench_corpus.py``) runs guarded by one real swarm shared by the
module, next to an unguarded run of the same app, with generous bounds:
peak at or under the target plus slack, work not collapsed. No timing claim.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivemind.swarm.bench import watchdog
from hivemind.swarm.bench.corpus import (
    CORPUS,
    DISCOVERY_SIDES,
    SIDES,
    CorpusApp,
    Plan,
    SideEnv,
    run_corpus,
    run_side,
    sides_for,
    summarize,
    verdict,
)
from hivemind.swarm.bench.corpus_child import percentile
from hivemind.swarm.bench.corpus_pairs import pairs_for, run_pair
from hivemind.swarm.bench.corpus_table import WATCHDOG_SOURCE, corpus_markdown, markdown_table
from hivemind.swarm.bench.runner import BenchOptions
from hivemind.swarm.errors import UsageError

APPS = {a.name: a for a in CORPUS}
SECONDS = 2.0


# -- pure: the bar, the summaries, the table ---------------------------------------------


def _spread(med: float, lo: float | None = None, hi: float | None = None) -> dict[str, float]:
    return {"median": med, "min": lo if lo is not None else med, "max": hi or med, "n": 3}


def _side(peak: float, rate: float, lo: float | None = None, hi: float | None = None,
          flagged: int = 0, flag_s: float = 0.0) -> dict[str, Any]:  # fmt: skip
    return {
        "repeats": 3,
        "errors": [],
        "peak_rss_mb": _spread(peak),
        "units_per_s": _spread(rate, lo, hi),
        "work_rel": {"median": rate / 100, "min": rate / 100, "max": rate / 100},
        "flagged_runs": flagged,
        "flagged_after_s": _spread(flag_s) if flagged else {"n": 0, "max": 0.0},
    }


FEASIBLE = CorpusApp("x", "x", 100, True, "")
INFEASIBLE = CorpusApp("y", "y", 100, False, "")


@pytest.mark.parametrize(
    ("sides", "expected"),
    [
        # holds, as fast as the watchdog (which also holds)
        ({"unguarded": _side(150, 100), "watchdog": _side(90, 90), "h": _side(95, 92)}, "meets"),
        # over the target
        ({"unguarded": _side(150, 100), "watchdog": _side(90, 90), "h": _side(105, 99)}, "peak"),
        # holds but slower than the watchdog, beyond the noise
        (
            {
                "unguarded": _side(150, 100),
                "watchdog": _side(90, 90, 88, 92),
                "h": _side(95, 60, 58, 62),
            },
            "of the watchdog",
        ),
        # 97 % of the watchdog, which holds: never below the watchdog, so not within 95 %
        (
            {
                "unguarded": _side(150, 100),
                "watchdog": _side(90, 90, 89, 91),
                "h": _side(95, 87, 86, 88),
            },
            "work 97% of the watchdog",
        ),
        # slower than the watchdog but the repeats overlap: within noise
        (
            {
                "unguarded": _side(150, 100),
                "watchdog": _side(90, 90, 80, 95),
                "h": _side(95, 84, 82, 91),
            },
            "within noise",
        ),
        # unguarded holds too (nothing to do): must keep 95 % of it
        (
            {
                "unguarded": _side(60, 100, 99, 101),
                "watchdog": _side(60, 99),
                "h": _side(60, 90, 89, 91),
            },
            "95 %",
        ),
    ],
)
def test_verdict_on_a_feasible_app(sides: dict[str, Any], expected: str) -> None:
    v = verdict(FEASIBLE, sides, "h")
    if expected == "meets":
        assert v == "meets the bar"
    elif expected == "within noise":
        assert v.startswith("within noise: work 93% of the watchdog"), v
    else:
        assert expected in v and v.startswith("fails"), v


def _rounds(peak: float, *rates: float) -> dict[str, Any]:
    side = _side(peak, sorted(rates)[len(rates) // 2], min(rates), max(rates))
    side["rounds"] = list(rates)
    return side


def test_verdict_pairs_the_rounds_when_it_has_them() -> None:
    # The machine slows down over the run: every side drops together. Medians and ranges
    # call it noise; round by round, h does 2 % more than the watchdog.
    drift = {
        "unguarded": _rounds(150, 200, 150, 100, 120, 160),
        "watchdog": _rounds(90, 180, 135, 90, 108, 144),
        "h": _rounds(95, 184, 138, 92, 110, 147),
    }
    assert verdict(FEASIBLE, drift, "h") == "meets the bar"
    # Below the watchdog in every one of 5 rounds, though the ranges overlap: a failure.
    slower = {**drift, "h": _rounds(95, 160, 120, 80, 96, 128)}
    v = verdict(FEASIBLE, slower, "h")
    assert v.startswith("fails: work 89% of the watchdog"), v
    # The same in 3 rounds only: one chance in 8, within noise.
    three = {k: {**v, "rounds": v["rounds"][:3]} for k, v in slower.items()}
    assert verdict(FEASIBLE, three, "h").startswith("within noise: work 89%")
    # Below in the median round only: within noise.
    mixed = {**drift, "h": _rounds(95, 180, 120, 80, 96, 150)}
    assert verdict(FEASIBLE, mixed, "h").startswith("within noise: work 89%")
    # With more rounds one lucky round does not save it: 10 of 12 short fails (p < 1/32),
    # 9 of 12 does not (p ~ 0.07).
    base = [180.0] * 12
    ten = {"watchdog": _rounds(90, *base), "unguarded": _rounds(150, *[200.0] * 12),
           "h": _rounds(95, *[160.0] * 10, 180.0, 190.0)}  # fmt: skip
    assert verdict(FEASIBLE, ten, "h").startswith("fails: work 89%")
    nine = {**ten, "h": _rounds(95, *[160.0] * 9, 180.0, 190.0, 200.0)}
    assert verdict(FEASIBLE, nine, "h").startswith("within noise: work 89%")
    # A round whose run failed is left out of the pairs.
    gap = {**drift, "h": _rounds(95, 184, 138, 92, 110, 147)}
    gap["h"]["rounds"][1] = None
    assert verdict(FEASIBLE, gap, "h") == "meets the bar"


def test_verdict_on_an_infeasible_app() -> None:
    u = _side(300, 100, 99, 101)
    assert verdict(INFEASIBLE, {"unguarded": u, "h": _side(300, 99, 98, 100, 3, 2.0)}, "h") == (
        "meets the bar"
    )
    not_flagged = verdict(INFEASIBLE, {"unguarded": u, "h": _side(300, 99, 98, 100)}, "h")
    assert "flagged infeasible in 0/3" in not_flagged
    late = verdict(INFEASIBLE, {"unguarded": u, "h": _side(300, 99, 98, 100, 3, 7.5)}, "h")
    assert "up to 7.5 s" in late
    slow = verdict(INFEASIBLE, {"unguarded": u, "h": _side(300, 50, 45, 55, 3, 1.0)}, "h")
    assert "of unguarded (< 97 %)" in slow


def test_summaries_and_table_from_raw_runs() -> None:
    app = APPS["memo"]

    def run(side: str, units: int, peak: float) -> dict[str, Any]:
        return {
            "app": "memo", "side": side, "units": units, "duration_s": 2.0, "peak_rss_mb": peak,
            "time_over_target_s": 0.5, "gc_pause_p99_ms": 1.0, "gc_pause_ms_total": 3.0,
            "guard_cpu_pct": 0.5, "reaction_ms": [12.0], "unanswered": 0,
            "flagged_after_s": None, "error": None, "timed_out": False,
        }  # fmt: skip

    runs = [run(s, 1000 + i, 40.0) for s in sides_for(app) for i in range(3)]
    sm = summarize(app, runs)
    assert set(sm["sides"]) == set(SIDES + DISCOVERY_SIDES)
    assert sm["sides"]["watchdog"]["work_rel"]["median"] == pytest.approx(1.0)
    assert set(sm["verdicts"]) == set(sides_for(app)) - {"unguarded", "watchdog"}
    lines = markdown_table([sm])
    assert lines[0].startswith("| app (target) | side | peak RSS MB")
    assert len(lines) == 2 + len(sides_for(app))
    record = {
        "plan": {"seconds": 2.0, "repeats": 3, "whole_run_cap_s": 45.0, "skipped": []},
        "swarm": "a running swarm",
        "apps": [
            {
                "name": "memo",
                "label": app.label,
                "target_mb": 45,
                "feasible": True,
                "what": app.what,
            }
        ],
        "summaries": [sm],
    }
    md = "\n".join(corpus_markdown(record))
    assert "start_watchdog" in md and "HIVEMIND_DISCOVER" in md


def _same(*ratios: float) -> dict[str, float]:
    return {"median": sorted(ratios)[len(ratios) // 2], "min": min(ratios),
            "max": max(ratios), "n": len(ratios)}  # fmt: skip


def test_verdict_uses_same_core_pairs_when_it_has_them() -> None:
    # Solo rounds would call h far below the watchdog; the same-core pairs decide.
    base = {"unguarded": _side(150, 100), "watchdog": _side(90, 90, 88, 92)}
    h = _side(95, 60, 58, 62)
    tight = _same(0.998, 1.0, 1.004)

    def judged(vs_w: dict[str, float], control: dict[str, float] = tight) -> str:
        sides = {**base, "h": {**h, "same_core": {"watchdog": vs_w, "unguarded": _same(0.9)}}}
        return verdict(FEASIBLE, sides, "h", control)

    assert judged(_same(1.01, 1.02, 1.03)) == "meets the bar"
    # Short of the watchdog by less than the resolution (1 %, the control is tighter).
    assert judged(_same(0.99, 0.995, 1.0)).startswith("within noise: work 100% of the watchdog")
    assert judged(_same(0.96, 0.97, 0.98)) == "fails: work 97% of the watchdog, same core"
    # A run whose control strayed 4 % cannot resolve 3 %.
    wide = _same(0.96, 1.0, 1.03)
    assert judged(_same(0.96, 0.97, 0.98), wide).startswith("within noise: work 97%")
    # Against the watchdog, the watchdog's own control decides when it has pairs: wider
    # than the unguarded one, it cannot resolve 3 % either; tighter, it resolves 2 %.
    sides = {**base, "h": {**h, "same_core": {"watchdog": _same(0.97), "unguarded": _same(0.9)}}}
    assert verdict(FEASIBLE, sides, "h", tight, wide).startswith("within noise: work 97%")
    assert verdict(FEASIBLE, sides, "h", wide, tight).startswith("fails: work 97%")
    empty = {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}  # a run without its pairs
    assert verdict(FEASIBLE, sides, "h", wide, empty).startswith("within noise")
    # Unguarded holds the target: at least 95 % of it, same core.
    holds = {**base, "unguarded": _side(80, 100)}
    sides = {**holds, "h": {**h, "same_core": {"watchdog": _same(1.1), "unguarded": _same(0.9)}}}
    v = verdict(FEASIBLE, sides, "h", tight)
    assert v == "fails: work 90% of unguarded, which holds the target (< 95 %), same core", v
    # Infeasible: at least 97 % of unguarded.
    flagged = {**_side(300, 99, 98, 100, 3, 2.0)}
    u = _side(300, 100, 99, 101)
    ok = verdict(INFEASIBLE, {"unguarded": u, "h": {**flagged, "same_core": {"unguarded":
                 _same(0.975)}}}, "h", tight)  # fmt: skip
    slow = verdict(INFEASIBLE, {"unguarded": u, "h": {**flagged, "same_core": {"unguarded":
                   _same(0.95)}}}, "h", tight)  # fmt: skip
    assert ok == "meets the bar" and slow.startswith("fails: work 95% of unguarded"), slow


def test_summaries_take_the_pairs_and_their_control() -> None:
    app = APPS["cpu"]

    def run(side: str) -> dict[str, Any]:
        return {
            "app": "cpu", "side": side, "units": 1000, "duration_s": 2.0, "peak_rss_mb": 18.0,
            "time_over_target_s": 0.0, "gc_pause_p99_ms": 0.0, "gc_pause_ms_total": 0.0,
            "guard_cpu_pct": 0.1, "reaction_ms": [], "unanswered": 0,
            "flagged_after_s": None, "error": None, "timed_out": False,
        }  # fmt: skip

    def pair(a: str, b: str, ratio: float | None) -> dict[str, Any]:
        bad = [{"side": a, "error": "child died (exit 1): boom"}, {"side": b}]
        return {"app": "cpu", "a": a, "b": b, "cpu": 1, "ratio": ratio, "late_s": 0.0,
                "runs": bad if ratio is None else [{}, {}]}  # fmt: skip

    runs = [run(s) for s in SIDES for _ in range(3)]
    pairs = [
        pair("hivemind-local", "unguarded", 0.99), pair("hivemind-local", "watchdog", 1.01),
        pair("hivemind-local", "unguarded", 0.98), pair("hivemind-local", "watchdog", 1.02),
        pair("unguarded", "unguarded", 1.002), pair("unguarded", "unguarded", 0.997),
        pair("watchdog", "watchdog", 0.95), pair("watchdog", "watchdog", 1.04),
        pair("hivemind-swarm", "unguarded", None),
    ]  # fmt: skip
    sm = summarize(app, runs, pairs)
    local = sm["sides"]["hivemind-local"]
    assert local["same_core"]["watchdog"]["median"] == pytest.approx(1.015)
    assert local["same_core"]["unguarded"]["n"] == 2
    assert sm["control"]["n"] == 2 and sm["control"]["min"] == pytest.approx(0.997)
    assert sm["watchdog_control"]["n"] == 2 and sm["watchdog_control"]["max"] == 1.04
    assert "same_core" not in sm["sides"]["watchdog"] or not sm["sides"]["watchdog"]["same_core"]
    assert sm["verdicts"]["hivemind-local"] == "meets the bar"
    assert sm["verdicts"]["hivemind-swarm"] == "fails: child died (exit 1): boom"
    row = next(r for r in markdown_table([sm]) if "| hivemind-local |" in r)
    assert "98.5 (98.0-99.0) %" in row and "101.5 (101.0-102.0) %" in row
    assert any("control 100.0 (99.7-100.2) %" in r for r in markdown_table([sm]))
    row = next(r for r in markdown_table([sm]) if "| watchdog |" in r)
    assert "control 99.5 (95.0-104.0) %" in row


def test_the_corpus_fixes_its_choices_before_any_run() -> None:
    assert {"tui", "batch", "fragment", "memo", "growth", "bursty", "cpu", "mypy_tool"} <= set(APPS)
    assert not APPS["growth"].feasible and not APPS["mypy_tool"].feasible
    assert APPS["memo"].discovery and APPS["fragment"].discovery
    assert APPS["tui"].target_mb == 60 and APPS["batch"].target_mb == 300
    assert percentile([1.0, 2.0, 3.0], 0.99) == 3.0 and percentile([], 0.5) == 0.0


def test_bench_options_validate_corpus_names() -> None:
    o = BenchOptions(corpus=("tui", "cpu"))
    assert "--corpus tui,cpu" in o.command()
    with pytest.raises(UsageError, match="--corpus"):
        BenchOptions(corpus=("nope",))


def test_the_documented_watchdog_is_the_one_that_runs() -> None:
    source = inspect.getsource(watchdog.start_watchdog)
    for line in ("if rss_mb > 0.8 * target_mb:", "gc.collect()", "time.sleep(every_s)"):
        assert line in source and line in WATCHDOG_SOURCE
    body = [ln for ln in WATCHDOG_SOURCE.splitlines() if ln.strip()]
    assert len(body) <= 12


# -- real runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def where(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SideEnv]:
    """One real swarm for the module, and an empty state folder for the local guard."""
    from hivemind.swarm.lifecycle.supervisor import Swarm
    from hivemind.swarm.settings import load_settings

    state = tmp_path_factory.mktemp("corpus") / ".hivemind"
    empty = tmp_path_factory.mktemp("corpus-empty") / ".hivemind"
    empty.mkdir()
    ns = f"corpus{uuid.uuid4().hex[:6]}"
    s = Swarm(load_settings(state_dir=state, namespace=ns, heartbeat_s=0.2))
    s.start()
    try:
        yield SideEnv(state, empty)
    finally:
        s.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_watchdog_holds_a_batch_job_that_unguarded_does_not(tmp_path: Path) -> None:
    # A target well under what the batch job reaches in 3 s even on a loaded machine
    # (its garbage comes at up to 250 MB/s, less when it gets little CPU).
    app = CorpusApp("batch", "batch", 80, True, "")
    env = SideEnv(None, tmp_path)
    u = run_side(app, "unguarded", 3.0, env, 30)
    w = run_side(app, "watchdog", 3.0, env, 30)
    assert u["error"] is None and w["error"] is None, (u, w)
    assert u["peak_rss_mb"] > app.target_mb * 1.25  # the app does need guarding
    assert w["peak_rss_mb"] <= app.target_mb * 1.15
    assert w["guard_cpu_s"] > 0 and w["gc_collections"] > 0
    # Not collapsed: an order of magnitude, as below. The batch job's work moves 3x run
    # to run on this machine (the benchmark's unguarded runs ranged 75-245 %); a bound
    # of 0.3 failed once on a clean clone (0.29).
    assert w["units"] > 0.1 * u["units"]


# Slack over the target for the swarm-guarded run: generous (2 s runs on a loaded
# 2-core machine). None: no bound on the peak yet, because today's guard does not hold
# that app (the measured table in benchmarks/results/corpus.md says by how much).
SLACK: dict[str, float | None] = {
    # 2 s runs: the TUI app's peak moves a lot run to run (the watchdog's median was 64.5
    # MB in one benchmark run); 1.2 x 60 = 72 MB is still well under its ~83 MB unguarded.
    "tui": 1.2,
    "batch": 1.3,
    "fragment": 1.3,
    "memo": 1.1,
    "bursty": 1.1,
    "cpu": 1.0,
}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_every_corpus_app_guarded_by_a_real_swarm(where: SideEnv) -> None:
    apps = tuple(a for a in CORPUS if not a.whole_run)
    runs = run_corpus(
        Plan(SECONDS, 1, 45.0), where, apps=apps, sides=("unguarded", "hivemind-swarm")
    )
    by = {(r["app"], r["side"]): r for r in runs}
    problems = []
    for app in apps:
        u, g = by[(app.name, "unguarded")], by[(app.name, "hivemind-swarm")]
        if u["error"] is not None or g["error"] is not None:
            problems.append((app.name, u["error"], g["error"]))
            continue
        # "Collapsed" is an order of magnitude: single 2 s runs of the bursty and
        # fragmentation apps swing 3x either way on a loaded machine.
        if g["units"] <= 0.1 * u["units"] * g["duration_s"] / u["duration_s"]:
            problems.append((app.name, "work collapsed", g["units"], u["units"]))
        slack = SLACK.get(app.name)
        if app.feasible and slack is not None and g["peak_rss_mb"] > app.target_mb * slack:
            problems.append((app.name, "peak", g["peak_rss_mb"], app.target_mb * slack))
        if not app.feasible and g["peak_rss_mb"] <= app.target_mb:
            problems.append((app.name, "an infeasible app held its target?", g["peak_rss_mb"]))
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_same_core_pair_shares_one_core_and_one_window(tmp_path: Path) -> None:
    # Real children: the control pair and the in-process guard against the watchdog, on the
    # CPU-bound app (no garbage: any difference is overhead). Bounds are generous; the
    # benchmark, not this test, measures.
    app = APPS["cpu"]
    env = SideEnv(None, tmp_path)
    for a, b in [("unguarded", "unguarded"), ("hivemind-local", "watchdog")]:
        p = run_pair(app, a, b, 1.5, env, 30.0, cpu=0, b_first=a == "unguarded")
        runs = p["runs"]
        assert all(r.get("error") is None for r in runs), p
        assert [r["side"] for r in runs] == [a, b]
        assert [r["cpus"] for r in runs] == [[0], [0]], runs
        assert p["late_s"] < 1.0 and p["cpu"] == 0
        assert p["ratio"] is not None and 0.5 < p["ratio"] < 2.0, p
    assert pairs_for(app) == [
        ("hivemind-local", "unguarded"), ("hivemind-local", "watchdog"),
        ("hivemind-swarm", "unguarded"), ("hivemind-swarm", "watchdog"),
        ("unguarded", "unguarded"), ("watchdog", "watchdog"),
    ]  # fmt: skip
    assert pairs_for(APPS["growth"], ("hivemind-local",)) == [
        ("hivemind-local", "unguarded"), ("unguarded", "unguarded"),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_live_growth_is_flagged_infeasible_by_the_in_process_guard(tmp_path: Path) -> None:
    # The in-target controller decides infeasibility; the swarm adds nothing to this check.
    app = APPS["growth"]
    r = run_side(app, "hivemind-local", 3.0, SideEnv(None, tmp_path), 30)
    assert r["error"] is None, r
    assert r["peak_rss_mb"] > app.target_mb
    assert r["flagged_after_s"] is not None, "never flagged infeasible"
    # Its first collection finds no garbage, and the rows it adds since are bytes (no
    # objects the collector tracks): nothing new to find, so only RSS growing by 5 %
    # of the target, then 10 %, is looked at again (3; 10 used to run).
    assert r["guard_stats"].get("local_collections", 0) <= 4, r["guard_stats"]
