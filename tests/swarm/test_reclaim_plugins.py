"""The reclaim plug-in API: costs, keep, guarded calls, reclaimable(), real entry points."""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cachetools
import pytest

from hivemind.swarm.target import reclaim as rc
from hivemind.swarm.target.planner import Reclaimer
from hivemind.swarm.target.reclaim import (
    ReclaimAction,
    ReclaimRegistry,
    call_guarded,
    load_entry_points,
)


@pytest.fixture
def registry() -> Iterator[ReclaimRegistry]:
    """A registry whose actions vanish after the test (the process-wide one is shared)."""
    before = set(rc.default_registry().names())
    yield rc.default_registry()
    for name in set(rc.default_registry().names()) - before:
        rc.default_registry().unregister(name)


def test_raising_and_hanging_actions_are_reported_never_raised(registry: ReclaimRegistry) -> None:
    release = threading.Event()
    calls = []

    def hang() -> None:
        calls.append(1)
        release.wait(10)

    rc.register_reclaim("boom", lambda: 1 // 0)
    rc.register_reclaim("hang", hang, cost=0.0)
    rec = Reclaimer(registry, discover=False, timeout_s=0.2, entry_points=False)
    t0 = time.monotonic()
    done = {o.name: o for o in rec.reclaim(1 << 40, max_actions=10)}
    assert time.monotonic() - t0 < 5
    assert not done["boom"].ok and "ZeroDivisionError" in done["boom"].error
    assert not done["hang"].ok and "timed out" in done["hang"].error
    again = rec.run("hang")  # still running: not called a second time
    assert not again.ok and "still running" in again.error
    assert calls == [1]
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not rec.run("hang").ok:
        time.sleep(0.05)
    assert len(calls) >= 2, "once the hung call returned, the action runs again"


def test_cost_orders_and_keep_excludes(registry: ReclaimRegistry) -> None:
    ran: list[str] = []
    rc.register_reclaim("cheap", lambda: ran.append("cheap") or 10_000_000, cost=0.0)
    rc.register_reclaim("dear", lambda: ran.append("dear") or 10_000_000, cost=9.0)
    rc.register_reclaim("kept", lambda: ran.append("kept") or 10_000_000, keep=True)
    for name in ("cheap", "dear"):
        spec = registry.spec(name)
        assert spec is not None
        registry.register(name, spec.fn, cost=spec.cost, estimate=lambda: 4 << 20)
    rec = Reclaimer(registry, discover=False, entry_points=False)
    rec.scan()
    order = [c.name for c in rec.eligible() if c.kind == "plugin"]
    assert order.index("cheap") < order.index("dear")
    assert "kept" not in order
    done = rec.reclaim(1 << 40, max_actions=20)
    assert "kept" not in ran and ran.index("cheap") < ran.index("dear")
    assert next(o for o in done if o.name == "cheap").reported_bytes == 10_000_000
    with pytest.raises(ValueError):
        rc.register_reclaim("bad name", lambda: None)
    with pytest.raises(ValueError):
        rc.register_reclaim("neg", lambda: None, cost=-1)


def test_reclaim_action_class_and_decorator(registry: ReclaimRegistry) -> None:
    class DropImages(ReclaimAction):
        cost = 0.25

        def __init__(self) -> None:
            self.images = [bytes(1000)] * 10

        def reclaim(self) -> int:
            self.images.clear()
            return 10_000

    action = DropImages()
    rc.register_reclaim("drop-images", action)
    spec = registry.spec("drop-images")
    assert spec is not None and spec.cost == 0.25

    @rc.reclaim_action("decorated", cost=2.0)
    def decorated() -> None:
        return None

    assert decorated() is None
    assert registry.spec("decorated") is not None
    out = Reclaimer(registry, discover=False, entry_points=False).run("drop-images")
    assert out.ok and out.reported_bytes == 10_000 and action.images == []


def test_reclaimable_dict_and_cachetools(registry: ReclaimRegistry) -> None:
    plain = rc.reclaimable({i: "v" * 1000 + str(i) for i in range(2000)}, "plain-dict")
    lru = rc.reclaimable(cachetools.LRUCache(maxsize=5000), "ct-lru")
    for i in range(2000):
        lru[i] = "w" * 1000 + str(i)
    rec = Reclaimer(registry, discover=False, entry_points=False)
    rec.scan()
    by = {c.name: c for c in rec.candidates()}
    assert 2000 * 1000 <= by["plain-dict"].expected_bytes <= 4 * 2000 * 1100
    assert 2000 * 1000 <= by["ct-lru"].expected_bytes <= 4 * 2000 * 1100
    rec.reclaim(1 << 40, max_actions=20)
    assert len(plain) == 0 and len(lru) == 0
    lru[1] = "again"  # still a working cache
    assert lru[1] == "again"
    with pytest.raises(TypeError):
        rc.reclaimable(object())


def test_guarded_call_returns_value_and_time() -> None:
    got = call_guarded("value", lambda: 123, 1.0)
    assert got.value == 123 and not got.error and got.ms >= 0


PLUGIN = """
from hivemind.swarm.target.reclaim import ReclaimAction

FREED = []

def drop_templates():
    FREED.append(1)
    return 4096

drop_templates.cost = 0.3

class IdleBuffers(ReclaimAction):
    cost = 0.1
    def reclaim(self):
        FREED.append(2)
        return None

def broken():
    return None
"""


def _install_dist(root: Path, dist: str) -> None:
    """A real installed distribution: a module and a .dist-info with entry_points.txt."""
    (root / "hm_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[hivemind.reclaim]\n"
        "templates = hm_test_plugin:drop_templates\n"
        "idle-buffers = hm_test_plugin:IdleBuffers\n"
        "missing = hm_test_plugin:no_such_thing\n"
    )
    (info / "RECORD").write_text("")


def test_entry_point_plugins_load_from_an_installed_dist(tmp_path: Path) -> None:
    _install_dist(tmp_path, "hm_test_plugin_dist")
    sys.path.insert(0, str(tmp_path))
    try:
        reg = ReclaimRegistry()
        loaded, errors = load_entry_points(reg)
        assert {"ep:templates", "ep:idle-buffers"} <= set(loaded)
        assert any(e.startswith("missing:") for e in errors), errors
        spec = reg.spec("ep:templates")
        assert spec is not None and spec.cost == pytest.approx(0.3)
        rec = Reclaimer(reg, discover=False, entry_points=False)
        assert rec.run("ep:templates").reported_bytes == 4096
        assert rec.run("ep:idle-buffers").ok
        assert sys.modules["hm_test_plugin"].FREED == [1, 2]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hm_test_plugin", None)
