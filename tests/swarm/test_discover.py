"""Cache discovery and the reclaim planner on real modules written to disk and imported."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from hivemind.swarm.target.discover import Discovery, estimate_cache_bytes, is_kept, keep
from hivemind.swarm.target.planner import Reclaimer
from hivemind.swarm.target.reclaim import ReclaimRegistry

APP = """
import functools

@functools.lru_cache(maxsize=None)
def module_cache(n):
    return "m" * 2000 + str(n)

@functools.cache
def kept_cache(n):
    return "k" * 2000 + str(n)

class Service:
    @functools.lru_cache(maxsize=4096)
    def method_cache(self, n):
        return "c" * 2000 + str(n)

    @staticmethod
    @functools.cache
    def static_cache(n):
        return "s" * 2000 + str(n)

    class Inner:
        @functools.cache
        def nested(n):
            return n

def _make():
    @functools.lru_cache(maxsize=None)
    def hidden(n):
        return "h" * 2000 + str(n)

    def lookup(n):
        return hidden(n)

    return lookup

lookup = _make()
SERVICE = Service()
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ModuleType]:
    name = f"hm_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module(name)
        yield mod
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _fill(app: ModuleType, n: int = 300) -> None:
    for i in range(n):
        app.module_cache(i)
        app.kept_cache(i)
        app.SERVICE.method_cache(i)
        app.Service.static_cache(i)
        app.lookup(i)


def test_finds_caches_in_modules_classes_and_closures(app: ModuleType) -> None:
    d = Discovery()
    d.scan()
    names = {c.name for c in d.caches.values()}
    mod = app.__name__
    for expected in (
        f"{mod}.module_cache",
        f"{mod}.kept_cache",
        f"{mod}.Service.method_cache",
        f"{mod}.Service.static_cache",
        f"{mod}.Service.Inner.nested",
        f"{mod}._make._locals_.hidden",
    ):
        assert expected in names, (expected, sorted(n for n in names if mod in n))
    assert not any(n.startswith("hivemind.") for n in names), "our own caches are not offered"


def test_rescan_after_imports_visits_only_new_modules(app: ModuleType, tmp_path: Path) -> None:
    d = Discovery()
    d.scan()
    assert not d.modules_changed()
    (tmp_path / "hm_late_mod.py").write_text(
        "import functools\n@functools.cache\ndef late(n):\n    return n\n"
    )
    try:
        importlib.import_module("hm_late_mod")
        assert d.modules_changed()
        d.scan(only_new=True)
        assert "hm_late_mod.late" in {c.name for c in d.caches.values()}
    finally:
        sys.modules.pop("hm_late_mod", None)


def test_size_estimate_is_near_what_the_entries_hold(app: ModuleType) -> None:
    _fill(app)
    est = estimate_cache_bytes(app.module_cache)
    # 300 strings of ~2 KB, each held only by the cache: the estimate must see them
    assert 300 * 2000 <= est <= 3 * 300 * 2100


def test_planner_clears_big_cold_caches_and_never_a_kept_one(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_DISCOVER", "1")
    keep(app.kept_cache)
    _fill(app)
    rec = Reclaimer(ReclaimRegistry(), min_bytes=64 * 1024, entry_points=False)
    rec.scan()
    by_name = {c.name: c for c in rec.candidates()}
    kept = by_name[f"cache:{app.__name__}.kept_cache"]
    assert kept.keep and is_kept(app.kept_cache)
    assert kept.name not in {c.name for c in rec.eligible()}
    done = rec.reclaim(1 << 40, max_actions=50)
    cleared = {o.name for o in done}
    assert f"cache:{app.__name__}.module_cache" in cleared
    assert kept.name not in cleared
    assert app.kept_cache.cache_info().currsize == 300, "a kept cache is never cleared"
    refused = rec.run(kept.name)  # not even when asked by name (a swarm command)
    assert not refused.ok and refused.error == "marked keep"
    assert app.kept_cache.cache_info().currsize == 300
    assert app.module_cache.cache_info().currsize == 0
    # a cleared cache keeps working: the next call recomputes (a miss), then hits
    misses = app.module_cache.cache_info().misses
    assert app.module_cache(7).endswith("7")
    assert app.module_cache.cache_info().misses == misses + 1
    app.module_cache(7)
    assert app.module_cache.cache_info().hits >= 1


def test_keep_patterns_from_the_environment(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_KEEP", f"{app.__name__}.Service.*")
    _fill(app)
    rec = Reclaimer(ReclaimRegistry(), min_bytes=1, entry_points=False)
    rec.scan()
    rec.reclaim(1 << 40, max_actions=50)
    assert app.SERVICE.method_cache.cache_info().currsize == 300
    assert app.Service.static_cache.cache_info().currsize == 300
    assert app.module_cache.cache_info().currsize == 0


def test_order_prefers_cold_large_low_hit_rate(app: ModuleType) -> None:
    _fill(app)
    for _ in range(20):  # make method_cache hot with a high hit rate
        for i in range(300):
            app.SERVICE.method_cache(i)
    rec = Reclaimer(ReclaimRegistry(), min_bytes=1, entry_points=False)
    rec.scan()
    rec.scan()  # a second look measures calls per second
    order = [c.name for c in rec.eligible()]
    mod = app.__name__
    cold, hot = f"cache:{mod}.module_cache", f"cache:{mod}.Service.method_cache"
    assert order.index(cold) < order.index(hot)


def test_discovery_off_by_environment(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVEMIND_DISCOVER", "0")
    _fill(app)
    rec = Reclaimer(ReclaimRegistry(), min_bytes=1, entry_points=False)
    rec.scan()
    assert not [c for c in rec.candidates() if c.kind == "lru"]
    rec.reclaim(1 << 40)
    assert app.module_cache.cache_info().currsize == 300


def test_observe_scans_on_rising_pressure_only() -> None:
    rec = Reclaimer(ReclaimRegistry(), entry_points=False)
    assert not rec.observe(False, now=0.0)
    assert rec.observe(True, now=1.0)
    assert rec.discovery.scans == 1
    assert not rec.observe(True, now=1.05), "no rescan at the sampling rate"
    rec.observe(False, now=2.0)
    assert rec.observe(True, now=3.0)
    assert rec.discovery.scans == 2


def test_interpreter_caches_are_listed_and_cleared_only_when_worth_it() -> None:
    import re

    for i in range(200):
        re.compile(f"hm_pattern_{i}_[a-z]+")
    rec = Reclaimer(ReclaimRegistry(), discover=False, min_bytes=1, entry_points=False)
    rec.scan()
    names = {c.name: c for c in rec.candidates()}
    assert {"interp:re", "interp:linecache", "interp:importlib", "interp:typecache"} <= set(names)
    assert names["interp:re"].expected_bytes > 0
    assert "interp:typecache" not in {c.name for c in rec.eligible()}, "frees nothing: not chosen"
    out = rec.run("interp:re")
    assert out.ok
    assert len(getattr(re, "_cache", {})) == 0


def test_hook_offers_options_to_a_controller(app: ModuleType) -> None:
    from hivemind.swarm.target.wiring import ReclaimHook

    _fill(app)
    hook = ReclaimHook(ReclaimRegistry(), 10**12, "t")
    hook.reclaimer.min_bytes = 1
    hook.reclaimer.scan()
    opts = {name: (b, ms) for name, b, ms in hook.options()}
    mine = f"cache:{app.__name__}.module_cache"
    assert opts[mine][0] > 300 * 2000 and opts[mine][1] > 0
    assert hook.run(mine).ok
    assert app.module_cache.cache_info().currsize == 0


def test_the_hook_scans_in_its_own_thread_and_says_so_through_its_version(
    app: ModuleType,
) -> None:
    """A scan never runs in the caller's (the guard's) thread: on_sample only asks."""
    import threading

    from hivemind.swarm.target.wiring import ReclaimHook

    _fill(app)
    hook = ReclaimHook(ReclaimRegistry(), 10 * 2**20, "t")
    hook.reclaimer.min_bytes = 1
    scanned_in: list[str] = []
    scan = hook.reclaimer.scan

    def spy(*, full: bool = True) -> list[object]:
        scanned_in.append(threading.current_thread().name)
        return list(scan(full=full))

    hook.reclaimer.scan = spy  # type: ignore[method-assign]
    before = hook.version
    assert hook.on_sample(9 * 2**20, decide=False) == []  # 90 % of the target: pressure
    assert hook.wait_scanned(10.0), "the scan never finished"
    hook.on_sample(9 * 2**20, decide=False)
    assert scanned_in == ["hivemind-scan"]
    assert hook.version > before, "a finished scan moves the version"
    names = {name for name, _, _ in hook.options()}
    assert f"cache:{app.__name__}.module_cache" in names
