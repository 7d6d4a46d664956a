from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from hivemind.agents.pool import (
    ObjectPool,
    PoolableWidgetProperties,
    PoolableWidgetState,
    create_pool,
    get_pool,
    live_pools,
    pool_names,
    remove_pool,
    trim_all_pools,
)


def test_acquire_creates_then_reuses_and_counts() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list, 4)
    a = pool.acquire()
    assert pool.release(a) is True
    assert pool.acquire() is a
    s = pool.stats()
    assert (s.created, s.reused, s.released, s.in_pool) == (1, 1, 1, 0)
    assert s.reuse_rate == 0.5
    assert s.outstanding == 1


def test_full_pool_rejects_release() -> None:
    pool: ObjectPool[dict[str, int]] = ObjectPool(dict, 2)
    objs = [pool.acquire() for _ in range(3)]
    assert [pool.release(o) for o in objs] == [True, True, False]
    s = pool.stats()
    assert s.in_pool == 2 and s.rejected == 1


def test_zero_size_pool_never_keeps_anything() -> None:
    pool: ObjectPool[dict[str, int]] = ObjectPool(dict, 0)
    assert pool.release(pool.acquire()) is False
    assert len(pool) == 0


def test_validate_failure_is_not_pooled() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list, 5, validate=lambda o: len(o) < 3)
    big = pool.acquire()
    big.extend([1, 2, 3])
    assert pool.release(big) is False
    assert pool.stats().rejected == 1 and len(pool) == 0


def test_reset_callback_and_auto_reset() -> None:
    cleared: list[int] = []
    pool: ObjectPool[list[int]] = ObjectPool(
        list, 5, reset=lambda o: (o.clear(), cleared.append(1))
    )
    obj = pool.acquire()
    obj.append(7)
    pool.release(obj)
    assert obj == [] and cleared == [1]

    states: ObjectPool[PoolableWidgetState] = ObjectPool(PoolableWidgetState, 5)
    st = states.acquire()
    st.update(text="hi")
    st.flags.add("dirty")
    states.release(st)
    assert st == PoolableWidgetState()

    props: ObjectPool[PoolableWidgetProperties] = ObjectPool(PoolableWidgetProperties, 5)
    pr = props.acquire()
    pr.props["label"] = "x"
    pr.classes.append("c")
    pr.widget_type = "button"
    props.release(pr)
    assert pr == PoolableWidgetProperties()


def test_reset_exception_rejects_and_propagates() -> None:
    def bad_reset(o: list[int]) -> None:
        raise RuntimeError("boom")

    pool: ObjectPool[list[int]] = ObjectPool(list, 5, reset=bad_reset)
    with pytest.raises(RuntimeError):
        pool.release(pool.acquire())
    assert len(pool) == 0 and pool.stats().rejected == 1


def test_double_release_is_rejected() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list, 5)
    obj = pool.acquire()
    assert pool.release(obj) is True
    assert pool.release(obj) is False
    assert pool.acquire() is obj
    assert pool.acquire() is not obj


def test_borrow_context_manager_releases_on_error() -> None:
    pool: ObjectPool[list[int]] = ObjectPool(list, 5)
    with pytest.raises(KeyError), pool.borrow() as obj:
        raise KeyError("x")
    assert pool.acquire() is obj


def test_prefill_trim_and_max_size_shrink() -> None:
    pool: ObjectPool[dict[str, Any]] = ObjectPool(dict, 10)
    assert pool.prefill(20) == 10
    assert pool.stats().acquired == 0  # prefill does not distort the reuse rate
    assert pool.trim(3) == 3 and len(pool) == 7
    pool.max_size = 4
    assert len(pool) == 4 and pool.stats().trimmed == 6
    assert pool.trim() == 4 and len(pool) == 0


def test_trim_all_pools_fraction() -> None:
    a: ObjectPool[dict[str, Any]] = ObjectPool(dict, 10)
    b: ObjectPool[dict[str, Any]] = ObjectPool(dict, 10)
    a.prefill(10)
    b.prefill(3)
    released = trim_all_pools(0.5)
    assert released >= 5 + 2  # other live pools may contribute too
    assert (len(a), len(b)) == (5, 1)
    trim_all_pools()
    assert (len(a), len(b)) == (0, 0)


def test_pools_are_tracked_weakly() -> None:
    pool: ObjectPool[dict[str, Any]] = ObjectPool(dict, 1, name="ephemeral-pool")
    assert pool in live_pools()
    del pool
    gc.collect()
    assert all(p.name != "ephemeral-pool" for p in live_pools())


def test_named_registry() -> None:
    pool = create_pool("test_registry_states", PoolableWidgetState, max_size=200)
    try:
        assert get_pool("test_registry_states") is pool
        assert "test_registry_states" in pool_names()
        with pytest.raises(ValueError, match="already exists"):
            create_pool("test_registry_states", dict, 5)
        replaced = create_pool("test_registry_states", dict, 5, replace=True)
        assert get_pool("test_registry_states") is replaced
    finally:
        assert remove_pool("test_registry_states") is True
    assert remove_pool("test_registry_states") is False
    with pytest.raises(KeyError, match="no pool named"):
        get_pool("test_registry_states")


@pytest.mark.parametrize("size", [-1, -100, 1.5, True])
def test_bad_sizes_raise_value_error(size: Any) -> None:
    with pytest.raises(ValueError, match="max_size"):
        ObjectPool(dict, size)


def test_bad_arguments_raise_value_error() -> None:
    pool: ObjectPool[dict[str, Any]] = ObjectPool(dict, 3)
    with pytest.raises(ValueError):
        pool.trim(-1)
    with pytest.raises(ValueError):
        pool.prefill(-1)
    with pytest.raises(ValueError):
        pool.max_size = -2
    with pytest.raises(ValueError):
        trim_all_pools(1.5)
    with pytest.raises(ValueError):
        trim_all_pools(-0.1)
    with pytest.raises(ValueError):
        create_pool("", dict)
    with pytest.raises(ValueError):
        ObjectPool("not callable", 3)  # type: ignore[arg-type]


class _Owned:
    __slots__ = ("owner",)

    def __init__(self) -> None:
        self.owner: int | None = None


def test_concurrent_acquire_release_never_shares_an_object() -> None:
    pool: ObjectPool[_Owned] = ObjectPool(_Owned, 16)
    threads, rounds = 8, 3000
    errors: list[str] = []
    start = threading.Barrier(threads)

    def worker() -> None:
        me = threading.get_ident()
        start.wait()
        for _ in range(rounds):
            held = [pool.acquire() for _ in range(3)]
            for obj in held:
                if obj.owner is not None:
                    errors.append("object handed to two owners")
                obj.owner = me
            for obj in held:
                if obj.owner != me:
                    errors.append("object changed owner while held")
                obj.owner = None
                pool.release(obj)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    s = pool.stats()
    assert s.acquired == threads * rounds * 3
    assert s.released + s.rejected == s.acquired
    assert s.outstanding == 0
    assert s.in_pool <= 16
    # At most threads*3 objects are ever held at once, so creation is bounded.
    assert s.created <= 16 + threads * 3 + s.rejected
    assert s.reuse_rate > 0.9
