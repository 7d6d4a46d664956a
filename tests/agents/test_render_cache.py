from __future__ import annotations

import gc
import threading

import pytest

from hivemind.agents.render_cache import (
    DEFAULT_TTL_S,
    RenderCache,
    deep_sizeof,
    evict_all_caches,
    live_caches,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_default_ttl_is_the_seed_reports() -> None:
    assert DEFAULT_TTL_S == 30.0
    assert RenderCache().ttl_seconds == 30.0


def test_hits_misses_and_rate() -> None:
    cache: RenderCache[str, str] = RenderCache(10, 5)
    assert cache.get("a") is None
    cache.set("a", "A")
    assert cache.get("a") == "A"
    assert cache.get("a") == "A"
    s = cache.stats()
    assert (s.hits, s.misses, s.lookups) == (2, 1, 3)
    assert s.hit_rate == pytest.approx(2 / 3)


def test_ttl_expiry_with_injected_clock() -> None:
    clock = FakeClock()
    cache: RenderCache[str, int] = RenderCache(10, 10.0, timer=clock)
    cache.set("a", 1)
    clock.now = 5.0
    cache.set("b", 2)
    clock.now = 9.99
    assert cache.get("a") == 1
    clock.now = 10.0
    assert cache.get("a") is None  # expired exactly at ttl
    assert "b" in cache
    assert cache.evict_expired() == 1
    clock.now = 15.0
    assert len(cache) == 0
    assert cache.stats().expirations == 2


def test_size_bound_evicts_least_recently_used() -> None:
    cache: RenderCache[str, int] = RenderCache(3, 100)
    for i, k in enumerate("abc"):
        cache.set(k, i)
    assert cache.get("a") == 0  # a is now most recently used
    cache.set("d", 3)
    assert "b" not in cache
    assert all(k in cache for k in "acd")
    assert cache.stats().evictions == 1


def test_get_or_render_renders_once_per_key() -> None:
    calls: list[str] = []
    cache: RenderCache[str, str] = RenderCache(10, 100)

    def render() -> str:
        calls.append("x")
        return "rendered"

    assert cache.get_or_render("k", render) == "rendered"
    assert cache.get_or_render("k", render) == "rendered"
    assert calls == ["x"]
    assert cache.invalidate("k") is True
    assert cache.invalidate("k") is False
    cache.get_or_render("k", render)
    assert len(calls) == 2


def test_clear_and_evict_all_caches_expired_only() -> None:
    clock = FakeClock()
    c1: RenderCache[int, int] = RenderCache(10, 1.0, timer=clock)
    c2: RenderCache[int, int] = RenderCache(10, 100.0, timer=clock)
    for i in range(4):
        c1.set(i, i)
        c2.set(i, i)
    clock.now = 2.0
    assert evict_all_caches(expired_only=True) >= 4
    assert len(c1) == 0 and len(c2) == 4
    assert evict_all_caches() >= 4
    assert len(c2) == 0
    c2.set(1, 1)
    assert c2.clear() == 1


def test_memory_estimate_grows_with_content() -> None:
    cache: RenderCache[int, list[str]] = RenderCache(100, 100)
    empty = cache.memory_estimate_bytes()
    for i in range(10):
        cache.set(i, ["x" * 200 for _ in range(10)])
    assert cache.memory_estimate_bytes() > empty + 10 * 10 * 200
    assert deep_sizeof({"a": ["b" * 1000]}) > 1000


def test_caches_are_tracked_weakly() -> None:
    cache: RenderCache[int, int] = RenderCache(5, 5, name="ephemeral-cache")
    assert cache in live_caches()
    del cache
    gc.collect()
    assert all(c.name != "ephemeral-cache" for c in live_caches())


@pytest.mark.parametrize(("size", "ttl"), [(0, 1.0), (-5, 1.0), (10, 0), (10, -1.0)])
def test_bad_arguments_raise_value_error(size: int, ttl: float) -> None:
    with pytest.raises(ValueError):
        RenderCache(size, ttl)


def test_concurrent_get_set_is_consistent() -> None:
    cache: RenderCache[int, int] = RenderCache(64, 100)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(5000):
                key = (i * 7 + seed) % 128
                value = cache.get(key)
                if value is not None and value != key * 2:
                    raise AssertionError("wrong value for key")
                cache.set(key, key * 2)
        except BaseException as exc:
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    s = cache.stats()
    assert s.lookups == 4 * 5000
    assert s.size <= 64
