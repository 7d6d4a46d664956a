"""Keep every agents test from leaking threads, GC settings or singletons."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from hivemind.agents import gc_optimizer, widget_manager


@pytest.fixture(autouse=True)
def _isolate_gc_and_threads() -> Iterator[None]:
    thresholds = gc.get_threshold()
    debug = gc.get_debug()
    callbacks = list(gc.callbacks)
    before = {t.ident for t in threading.enumerate()}
    yield
    for module in (gc_optimizer, widget_manager):
        glob = module._GLOBAL
        if glob is not None:
            glob.close()
            module._GLOBAL = None
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    gc.set_threshold(*thresholds)
    gc.set_debug(debug)
    gc.callbacks[:] = callbacks
    gc.unfreeze()
    assert not leaked, f"test leaked threads: {leaked}"
