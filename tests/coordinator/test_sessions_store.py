"""SessionStore against the real embedded redis-server."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hivemind.coordinator.sessions.recorder import (
    SessionStore,
    UnknownSessionError,
    request_restore,
)
from hivemind.coordinator.sessions.store import append_args
from hivemind.swarm.errors import UsageError
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import Control, parse_message
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.seal import unseal

KEY = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with EmbeddedRedis(tmp_path / "state").lease() as url:
        client = connect(url)
        try:
            yield SessionStore(client, Keys(f"s{uuid.uuid4().hex[:8]}"), maxlen=1000)
        finally:
            client.close()


def test_ensure_creates_then_resumes(store: SessionStore) -> None:
    sid, created = store.ensure(None, {"source": "swarm", "target_mb": "1536"})
    assert created and sid.startswith("hm-") and len(sid) == len("hm-20261125-ab12cd")
    again, created = store.ensure(sid, {"source": "other"})
    assert (again, created) == (sid, False)
    assert store.snapshot(sid).meta == {"source": "swarm", "target_mb": "1536"}
    with pytest.raises(UsageError):
        store.ensure("bad id", {})


def test_append_dedup_counters_and_order(store: SessionStore) -> None:
    sid, _ = store.ensure("s1", {})
    assert store.append(sid, "decision", {"level": "balanced"}, dedup_key="d1")
    assert not store.append(sid, "decision", {"level": "balanced"}, dedup_key="d1")
    assert store.append(
        sid, "ack", {"bytes_freed": 1000}, counters={"bytes_freed": 1000, "ms": 2.5}
    )
    assert store.append(sid, "ack", {"bytes_freed": 500}, counters={"bytes_freed": 500, "ms": 0.5})
    snap = store.snapshot(sid)
    assert snap.counters == {"events": 3, "decision": 1, "ack": 2, "bytes_freed": 1500, "ms": 3.0}
    assert snap.event_count == 3 and snap.stream_len == 3
    assert [e.kind for e in snap.recent] == ["ack", "ack", "decision"]
    assert [e.kind for e in store.events(sid, 2, reverse=False)] == ["decision", "ack"]
    store.ensure("s2", {})
    assert [s.session_id for s in store.list_sessions()] == ["s2", "s1"]
    store.incr(sid, "decisions_applied", 2)
    assert store.incr(sid, "mb", 0.25) == 0.25
    assert [s.session_id for s in store.list_sessions(1)] == ["s1"]


def test_level_settings_learned(store: SessionStore) -> None:
    sid, _ = store.ensure(None, {})
    store.set_level(sid, "aggressive")
    store.set_settings(sid, {"target_mb": 1024, "profile": "balanced"})
    assert store.learned_record(sid, "collect:2", 1000, 10.0) == 1
    assert store.learned_record(sid, "collect:2", 3000, 20.0) == 2
    store.learned_record(sid, "malloc_trim", 50, 1.0)
    table = store.learned_table(sid)
    assert table["collect:2"].n == 2
    assert table["collect:2"].mean_bytes_freed == pytest.approx(2000)
    assert table["collect:2"].mean_ms == pytest.approx(15.0)
    snap = store.snapshot(sid)
    assert snap.level == "aggressive" and snap.settings == {
        "target_mb": "1024",
        "profile": "balanced",
    }
    assert set(snap.learned) == {"collect:2", "malloc_trim"}


def test_unknown_session(store: SessionStore) -> None:
    with pytest.raises(UnknownSessionError, match="unknown session 'ghost'"):
        store.snapshot("ghost")
    with pytest.raises(UnknownSessionError):
        store.export("ghost", "json", io.StringIO())
    with pytest.raises(UnknownSessionError):
        request_restore(store.client, store.keys, "ghost", key=KEY)
    assert not store.exists("ghost")


def test_stream_is_capped(store: SessionStore) -> None:
    sid, _ = store.ensure(None, {})
    pipe = store.client.pipeline(transaction=False)
    for i in range(5000):
        k, a = append_args(
            store.keys, sid, "sample", {"i": i}, dedup_key=f"k{i}", maxlen=store.maxlen
        )
        store._append(keys=k, args=a, client=pipe)
    pipe.execute()
    snap = store.snapshot(sid)
    assert snap.event_count == 5000 and 1000 <= snap.stream_len <= 1200
    assert store.client.zcard(store.keys.session_dedup(sid)) == 1000
    assert snap.recent[0].payload == {"i": 4999}


def test_export_json_and_csv(store: SessionStore, tmp_path: Path) -> None:
    store = SessionStore(store.client, store.keys, maxlen=10_000)
    sid, _ = store.ensure("exp", {"source": "t"})
    for i in range(2500):  # more than one export chunk
        store.append(sid, "tick", {"i": i, "text": 'quote " and, comma'})
    buf = io.StringIO()
    assert store.export(sid, "json", buf) == 2500
    doc = json.loads(buf.getvalue())
    assert doc["session"]["session_id"] == "exp" and doc["session"]["event_count"] == 2500
    assert [e["payload"]["i"] for e in doc["events"]] == list(range(2500))
    path = tmp_path / "out.csv"
    assert store.export(sid, "csv", path) == 2500
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2500 and rows[0]["kind"] == "tick"
    assert json.loads(rows[-1]["payload"]) == {"i": 2499, "text": 'quote " and, comma'}
    with pytest.raises(UsageError):
        store.export(sid, "xml", buf)  # type: ignore[arg-type]


def test_request_restore_with_a_tiny_coordinator(store: SessionStore) -> None:
    sid, _ = store.ensure(None, {})
    keys, client = store.keys, store.client
    assert request_restore(client, keys, sid, key=KEY, timeout_s=0.2) is False  # nobody listening
    pubsub: redis.client.PubSub = client.pubsub()
    pubsub.subscribe(keys.control)
    pubsub.get_message(timeout=1)
    got: list[Control] = []

    def coordinator() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                control = parse_message(unseal(msg["data"], KEY))  # sealed
                assert isinstance(control, Control)
                got.append(control)
                time.sleep(0.1)  # the coordinator takes a moment to reload
                client.hset(keys.swarm, "session_id", control.session_id)
                return

    t = threading.Thread(target=coordinator)
    t.start()
    assert request_restore(client, keys, sid, key=KEY, timeout_s=3) is True
    t.join(5)
    pubsub.close()
    assert got[0].op == "restore" and got[0].session_id == sid
