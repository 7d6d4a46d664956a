"""Message models (schema version, validation) and settings (env, flags, errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivemind.swarm.errors import ConfigError
from hivemind.swarm.keys import Keys
from hivemind.swarm.messages import (
    Ack,
    Action,
    ActionKind,
    Command,
    Decision,
    Level,
    MemorySample,
    MessageError,
    parse_message,
)
from hivemind.swarm.settings import load_settings

_SAMPLE = b'{"kind":"sample","target":"t","seq":1,"rss_bytes":1,"target_bytes":2,%s}'
_ACK = b'{"kind":"ack","command_id":"c","decision_id":"d","target":"t","ok":true,%s}'


def test_every_model_round_trips_with_version() -> None:
    action = Action(kind=ActionKind.COLLECT, generation=2)
    msgs = [
        MemorySample(target="t", pid=1, seq=0, rss_bytes=10, target_bytes=100),
        Decision(
            session_id="s",
            target="t",
            level=Level.EMERGENCY,
            actions=(action,),
            event_ts=1.0,
            sample_ts=1.0,
        ),
        Command(decision_id="d", target="t", actions=(action,)),
        Ack(command_id="c", decision_id="d", target="t", ok=True, bytes_freed=5),
    ]
    for msg in msgs:
        raw = msg.model_dump_json()
        assert '"v":1' in raw
        assert parse_message(raw) == msg


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "invalid"),
        (b'{"kind":"sample"}', "invalid"),
        (b'{"kind":"bogus"}', "unknown_kind"),
        (b'{"kind":"control","v":2,"op":"restore","session_id":"a"}', "version"),
        (_SAMPLE % b'"pid":-1', "invalid"),
        (_SAMPLE.replace(b'"t"', b'"a b"') % b'"pid":1', "invalid"),
        (_SAMPLE % b'"pid":1,"extra":1', "invalid"),
        (_SAMPLE % b'"pid":1,"ts":1e309', "invalid"),  # inf
        (_SAMPLE % b'"pid":1,"ts":NaN', "invalid"),
        (_SAMPLE % b'"pid":1,"ts":-1e308', "invalid"),
        (_SAMPLE % b'"pid":1,"ts":1e308', "invalid"),
        (_SAMPLE.replace(b'"rss_bytes":1', b'"rss_bytes":1' + b"0" * 25) % b'"pid":1', "invalid"),
        (_ACK % b'"bytes_freed":10000000000000000000000000', "invalid"),
        (_ACK % b'"bytes_freed":-10000000000000000000000000', "invalid"),
        (_ACK % b'"applied_ts":1e308,"sample_ts":-1e308', "invalid"),
        (_ACK % b'"duration_ms":1e300', "invalid"),
        (b"[" * 100_000, "too_large"),
    ],
)
def test_bad_messages_are_classified(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_message(raw)
    assert info.value.reason == reason


def test_action_arguments_are_validated() -> None:
    with pytest.raises(ValueError):
        Action(kind=ActionKind.COLLECT, generation=3)
    with pytest.raises(ValueError):
        Action(kind="exec")  # type: ignore[arg-type]


def test_settings_env_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIVEMIND_TARGET_MB", "512")
    monkeypatch.setenv("HIVEMIND_NAMESPACE", "fromenv")
    monkeypatch.setenv("HIVEMIND_STATE_DIR", str(tmp_path / "st"))
    s = load_settings()
    assert (s.target_mb, s.namespace, s.state_dir) == (512.0, "fromenv", tmp_path / "st")
    s = load_settings(target_mb=256, namespace=None)
    assert (s.target_mb, s.namespace) == (256.0, "fromenv")
    assert s.embedded


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"target_mb": -5}, "invalid target-mb"),
        ({"namespace": "bad ns"}, "invalid namespace"),
        ({"redis_url": "http://x"}, "invalid redis-url"),
    ],
)
def test_bad_settings_are_one_line(flags: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_settings(**flags)
    assert "\n" not in str(info.value)


def test_state_dir_defaults_to_project_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert load_settings().state_dir == tmp_path.resolve() / ".hivemind"
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(tmp_path / "a"))
    assert load_settings().state_dir == (tmp_path / "a").resolve() / ".hivemind"


def test_keys_all_share_the_prefix() -> None:
    k = Keys("ns1")
    names = [
        k.samples,
        k.events,
        k.decisions("gc_optimizer"),
        k.acks,
        k.cmd("t"),
        k.swarm,
        k.agent("a"),
        k.session("s"),
        k.session_events("s"),
        k.memory("m"),
        k.bus_errors,
    ]
    assert all(n.startswith("hm:ns1:") for n in names)
