from __future__ import annotations

import gc
import threading
import time

import pytest

from hivemind.agents.widget_manager import (
    ManagedWidget,
    WidgetMemoryManager,
    emergency_widget_cleanup,
    generate_memory_report,
    get_widget_memory_manager,
    optimize_widget_memory,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_managed_widget_returns_state_and_props_to_pools() -> None:
    m = WidgetMemoryManager(1536)
    with ManagedWidget(m, "button", label="OK") as w:
        assert w.props.props == {"label": "OK"} and w.props.widget_type == "button"
        w.state.update(pressed=True)
        state, props = w.state, w.props
        assert m.get_widget(w.widget_id) is w
    assert w.closed and m.live_widgets == 0
    assert len(m.state_pool) == 1 and len(m.props_pool) == 1
    with m.create_widget("label") as again:
        assert again.state is state and again.props is props
        assert again.state.values == {} and again.props.props == {}
    with pytest.raises(RuntimeError, match="closed"):
        w.render(lambda _: "x")
    w.close()  # idempotent
    assert len(m.state_pool) == 1


def test_registry_is_weak() -> None:
    m = WidgetMemoryManager(1536)
    w = m.create_widget("panel")
    wid = w.widget_id
    assert m.live_widgets == 1
    del w
    gc.collect()
    assert m.get_widget(wid) is None and m.live_widgets == 0


def test_duplicate_live_id_is_rejected() -> None:
    m = WidgetMemoryManager(1536)
    w = ManagedWidget(m, "x", widget_id="same")
    with pytest.raises(ValueError, match="already registered"):
        ManagedWidget(m, "x", widget_id="same")
    # The failed widget gave its pooled objects back.
    assert len(m.state_pool) == 1
    w.close()
    ManagedWidget(m, "x", widget_id="same").close()


def test_render_is_cached_per_state_version() -> None:
    m = WidgetMemoryManager(1536)
    calls: list[int] = []

    def render(w: ManagedWidget) -> str:
        calls.append(w.state.version)
        return f"v{w.state.version}"

    with m.create_widget() as w:
        assert w.render(render) == "v0"
        assert w.render(render) == "v0"
        w.state.update(text="new")
        assert w.render(render) == "v1"
    assert calls == [0, 1]
    s = m.render_cache.stats()
    assert (s.hits, s.misses) == (1, 2)


def test_optimize_and_emergency_cleanup() -> None:
    clock = FakeClock()
    m = WidgetMemoryManager(1536, timer=clock, cache_ttl_s=10)
    widgets = [m.create_widget() for _ in range(20)]
    for w in widgets:
        w.render(lambda w: "x" * 100)
    keep = widgets[0]
    for w in widgets[1:]:
        w.close()
    clock.now = 11.0
    result = m.optimize()
    assert result["cache_entries_evicted"] == 1  # only the live widget's entry was left
    assert result["pool_objects_released"] == 2 * (19 // 2)
    m.state_pool.prefill(10)
    keep.render(lambda w: "y")
    result = m.emergency_widget_cleanup()
    assert len(m.state_pool) == 0 and len(m.props_pool) == 0 and len(m.render_cache) == 0
    assert result["live_widgets"] == 1 and not keep.closed
    keep.close()


def test_monitor_reclaims_over_target_and_never_leaks_a_thread() -> None:
    rss = {"mb": 50.0}
    m = WidgetMemoryManager(100, monitor_interval_s=0.01, rss_reader=lambda: rss["mb"])
    try:
        assert m.start_monitoring() is True
        assert m.start_monitoring() is False
        time.sleep(0.05)
        assert m.emergency_cleanups == 0 and m.optimizations == 0
        rss["mb"] = 150.0
        deadline = time.monotonic() + 5
        while m.emergency_cleanups == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.emergency_cleanups == 1
        time.sleep(0.05)
        assert m.emergency_cleanups == 1  # cooldown: not every tick
    finally:
        m.close()
    assert m.stop_monitoring() is False
    assert "hivemind-widget-monitor" not in [t.name for t in threading.enumerate()]


def test_report_and_module_level_api() -> None:
    m = get_widget_memory_manager(target_memory_mb=1024)
    assert get_widget_memory_manager() is m and m.target_memory_mb == 1024
    with m.create_widget("x") as w:
        w.render(lambda w: ["line"])
        report = generate_memory_report()
    assert "Widget memory report" in report and "widget_states" in report
    assert optimize_widget_memory()["action"] == "optimize"
    result = emergency_widget_cleanup()
    assert result["pool_objects_released"] >= 2
    assert len(m.state_pool) == 0


@pytest.mark.parametrize("target", [0, -1])
def test_bad_arguments(target: float) -> None:
    with pytest.raises(ValueError):
        WidgetMemoryManager(target)
    with pytest.raises(ValueError):
        WidgetMemoryManager(100, monitor_interval_s=0)
    with pytest.raises(ValueError):
        WidgetMemoryManager(100, state_pool_size=-1)
    with pytest.raises(ValueError):
        WidgetMemoryManager(100, cache_size=0)
