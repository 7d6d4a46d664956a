from __future__ import annotations

import gc
import sys
import weakref

import pytest

from hivemind.agents.circular import CircularReferenceDetector


class Node:
    def __init__(self) -> None:
        self.other: object = None


def _exception_cycle() -> weakref.ref[Node]:
    marker = Node()
    try:
        raise ValueError("kept alive by its own traceback")
    except ValueError as exc:
        # The classic cycle: the frame holds the exception, whose traceback
        # holds the frame.
        err = exc
    marker.other = err
    return weakref.ref(marker)


def test_frees_exception_and_frame_cycles_and_reports_them() -> None:
    gc.collect()
    gc.disable()
    try:
        ref = _exception_cycle()
        assert ref() is not None  # only the cycle keeps it alive
        report = CircularReferenceDetector().scan()
    finally:
        gc.enable()
    assert ref() is None
    assert report.frames_and_tracebacks >= 3  # frame, traceback, exception
    assert report.objects >= 4
    assert report.bytes_estimate > 0
    assert report.by_type.get("Node") == 1


def test_never_touches_reachable_cycles() -> None:
    gc.collect()
    live = {str(i): i for i in range(2000)}
    live["self"] = live  # type: ignore[assignment]
    node = Node()
    node.other = node
    snapshot = dict(live)
    gc.disable()
    try:
        for _ in range(10):  # unreachable garbage alongside
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        report = CircularReferenceDetector(large_dict_len=1000).scan()
    finally:
        gc.enable()
    assert live == snapshot and live["self"] is live
    assert node.other is node
    assert report.by_type.get("Node") == 20
    assert report.large_dicts == 0  # the large self-referencing dict is live


def test_reports_large_unreachable_dicts() -> None:
    gc.collect()
    gc.disable()
    try:
        big: dict[str, object] = {str(i): i for i in range(1500)}
        big["self"] = big
        del big
        report = CircularReferenceDetector(large_dict_len=1000).scan()
    finally:
        gc.enable()
    assert report.large_dicts == 1
    assert report.bytes_estimate >= sys.getsizeof({str(i): i for i in range(1500)})


def test_keeps_foreign_gc_garbage_and_restores_debug_flags() -> None:
    sentinel = object()
    gc.garbage.append(sentinel)
    # A flag the detector does not use itself, so "restored" is observable.
    gc.set_debug(gc.DEBUG_UNCOLLECTABLE)
    try:
        detector = CircularReferenceDetector()
        detector.scan()
        assert gc.garbage == [sentinel]
        assert gc.get_debug() == gc.DEBUG_UNCOLLECTABLE
        assert detector.scans == 1
        a: list[object] = []
        b: list[object] = [a]
        a.append(b)
        del a, b  # a two-list cycle: garbage only the collector can free
        assert detector.detect_and_break() >= 2
        assert detector.scans == 2
        assert gc.garbage == [sentinel]
        assert gc.get_debug() == gc.DEBUG_UNCOLLECTABLE
    finally:
        gc.set_debug(0)
        gc.garbage.remove(sentinel)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        CircularReferenceDetector(top_types=-1)
    with pytest.raises(ValueError):
        CircularReferenceDetector(large_dict_len=0)
