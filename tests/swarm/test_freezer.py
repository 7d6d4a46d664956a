"""The guard's gc.freeze(): taken only when no one else froze, given back to every full
collection the app runs itself, at stop, and before fork."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind.swarm.target.cost import CostMeter
from hivemind.swarm.target.freezer import Freezer
from hivemind.swarm.target.runtime import Runtime
from tests.conftest import offline_runtime


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture()
def hooked() -> Iterator[tuple[Freezer, CostMeter]]:
    """A freezer wired to a meter's gc callback, as the runtime wires them; all thawed after."""
    freezer, meter = Freezer(), CostMeter().start()
    meter.on_app_full = freezer.on_app_full_collection
    try:
        yield freezer, meter
    finally:
        meter.stop()
        freezer.thaw()
        gc.unfreeze()


def test_freeze_and_thaw_move_the_heap_out_of_collections_and_back() -> None:
    f = Freezer()
    try:
        gc.collect()
        assert f.freeze() and f.owned
        assert gc.get_freeze_count() > 0
        f.thaw()
        assert not f.owned and gc.get_freeze_count() == 0
        f.thaw()  # nothing held: nothing done
        assert f.thaws == 1
    finally:
        gc.unfreeze()


def test_an_app_that_froze_its_own_heap_is_never_frozen_nor_unfrozen_by_us() -> None:
    f = Freezer()
    try:
        gc.freeze()  # the app's (a pre-fork server's) own
        frozen = gc.get_freeze_count()
        assert not f.freeze()
        f.thaw()
        assert gc.get_freeze_count() == frozen, "the app's freeze stays"
        gc.unfreeze()
        assert not f.freeze(), "refused for good"
    finally:
        gc.unfreeze()


def test_the_guards_collection_skips_frozen_garbage_the_apps_own_finds_it(
    hooked: tuple[Freezer, CostMeter],
) -> None:
    freezer, meter = hooked
    obj = Cycle()
    ref = weakref.ref(obj)
    gc.collect()
    assert freezer.freeze()
    del obj  # garbage now, among the frozen
    meter.ours(True)
    try:
        gc.collect()  # the guard's: walks only what is new
    finally:
        meter.ours(False)
    assert ref() is not None and freezer.owned
    gc.collect(0)  # the app's young collection: frozen objects were old anyway
    assert ref() is not None and freezer.owned
    gc.collect()  # the app's own full collection: everything, as without us
    assert ref() is None
    assert not freezer.owned and gc.get_freeze_count() == 0


def test_hivemind_freeze_0_turns_freezing_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def runtime() -> Runtime:
        return offline_runtime(tmp_path / "none", "freeze-env")

    assert runtime().freezer.allowed
    monkeypatch.setenv("HIVEMIND_FREEZE", "0")
    off = runtime().freezer
    assert not off.freeze() and gc.get_freeze_count() == 0


GUARDED_APP = r"""
import gc, json, os, sys, time
import hivemind
from hivemind.agents.memtools import current_rss_bytes

class Node:
    def __init__(self, parent):
        self.parent = parent
        self.kids = []
        self.text = "x" * 40
        if parent is not None:
            parent.kids.append(self)

def tree(n):
    root = Node(None)
    for _ in range(n):
        Node(root)
    return root

gc.set_threshold(50000, 20, 20)  # the TUI corpus app's own "for speed"
keep = [tree(200) for _ in range(300)]  # a long-lived heap
base = current_rss_bytes() / 2**20
rt = hivemind.attach(target_mb=base + 12, name="freezer-app")
deadline = time.monotonic() + 20
while rt.freezer.freezes == 0 and time.monotonic() < deadline:
    screen = tree(3000)  # cyclic garbage once replaced
out = {"freezes": rt.freezer.freezes, "owned_before_fork": rt.freezer.owned}
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, str(gc.get_freeze_count()).encode())
    os._exit(0)
os.waitpid(pid, 0)
out["child_frozen"] = int(os.read(r, 64))
out["owned_after_fork"] = rt.freezer.owned
screen = None
from hivemind.swarm.target.attach import detach
detach()
out["frozen_after_detach"] = gc.get_freeze_count()
print(json.dumps(out))
"""


def test_a_guarded_app_making_cyclic_garbage_is_frozen_and_gets_its_heap_back(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "HIVEMIND_STATE_DIR": str(tmp_path / "none")}
    env.pop("HIVEMIND_FREEZE", None)
    p = subprocess.run(
        [sys.executable, "-c", GUARDED_APP], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["freezes"] >= 1, "a collection found garbage: what survived it was frozen"
    assert out["child_frozen"] == 0, "a forked child never inherits our freeze"
    assert not out["owned_after_fork"]
    assert out["frozen_after_detach"] == 0
