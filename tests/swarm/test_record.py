"""Light records behave as the slotted dataclasses they replace in the guarded process."""

from __future__ import annotations

import copy
import pickle

import pytest

from hivemind.swarm.keys import Keys
from hivemind.swarm.record import FrozenError, asdict, field, fields, frozen, record, replace
from hivemind.swarm.target.controller import ControllerConfig, GCSettings, Plan


@frozen
class Point:
    """A point."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


@record
class Bag:
    name: str
    items: list[int] = field(default_factory=list)


def test_frozen_records_compare_hash_and_refuse_assignment() -> None:
    p = Point(1, 2)
    assert p == Point(x=1, y=2) and p != Point(1, 3) and p != (1, 2, ())
    assert hash(p) == hash(Point(1, 2)) and len({p, Point(1, 2), Point(2, 1)}) == 2
    assert repr(p) == "Point(x=1, y=2, tags=())" and Point.__doc__ == "A point."
    assert p.norm1() == 3 and Point(5).y == 0
    with pytest.raises(FrozenError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.z = 1  # type: ignore[attr-defined]
    assert not hasattr(p, "__dict__") and Point.__slots__ == ("x", "y", "tags")
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_mutable_records_get_a_fresh_default_each_and_are_unhashable() -> None:
    a, b = Bag("a"), Bag("a")
    assert a == b and a.items is not b.items
    a.items.append(1)
    assert a != b and a.items == [1] and b.items == []
    a.name = "z"
    assert a.name == "z"
    with pytest.raises(TypeError):
        hash(a)
    with pytest.raises(AttributeError):
        a.other = 1  # type: ignore[attr-defined]


def test_replace_asdict_fields_pickle_copy_and_match() -> None:
    p = Point(1, 2, ("t",))
    assert replace(p, y=5) == Point(1, 5, ("t",)) and p.y == 2
    with pytest.raises(TypeError):
        replace(p, nope=1)
    assert asdict(Bag("n", [1])) == {"name": "n", "items": [1]}
    assert fields(Point) == fields(p) == ("x", "y", "tags")
    with pytest.raises(TypeError):
        fields(object())
    for obj in (p, Bag("n", [2]), Keys("ns"), ControllerConfig(), Plan(GCSettings((1, 2, 3)))):
        assert pickle.loads(pickle.dumps(obj)) == obj
        assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj
    match p:
        case Point(x, y):
            assert (x, y) == (1, 2)
        case _:
            pytest.fail("no match")


def test_what_a_record_cannot_be_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="without a default"):

        @frozen
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="inherit"):

        @frozen
        class Child(Point):
            z: int = 0

    with pytest.raises(TypeError, match="super"):

        @record
        class Sup:
            a: int

            def __repr__(self) -> str:
                return super().__repr__()


def test_the_guards_own_records_keep_their_dataclass_behaviour() -> None:
    cfg = ControllerConfig()
    assert replace(cfg, start_t0=123).start_t0 == 123 and cfg.start_t0 != 123
    assert GCSettings((700, 10, 10)) == GCSettings((700, 10, 10), True)
    assert {Keys("a"), Keys("a"), Keys("b")} == {Keys("a"), Keys("b")}
    with pytest.raises(FrozenError):
        cfg.collect = 0.5  # type: ignore[misc]
