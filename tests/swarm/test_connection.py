"""Connecting by URL: embedded unix socket, a password-protected "external" server, bad URLs."""

from __future__ import annotations

import pytest

from hivemind.swarm.errors import RedisUnavailableError, UsageError
from hivemind.swarm.redis.connection import connect, redact_url
from hivemind.swarm.redis.server import EmbeddedRedis


def test_password_url_connects(password_server: tuple[EmbeddedRedis, str]) -> None:
    server, password = password_server
    url = f"unix://:{password}@{server.socket_path}"
    c = connect(url)
    assert c.ping() is True
    c.close()


def test_acl_user_url_connects(password_server: tuple[EmbeddedRedis, str]) -> None:
    server, password = password_server
    admin = connect(f"unix://:{password}@{server.socket_path}")
    admin.execute_command(
        "ACL", "SETUSER", "hm", "on", ">s3cret", "resetchannels", "~hm:*", "&hm:*", "+@all"
    )
    admin.close()
    c = connect(f"unix://hm:s3cret@{server.socket_path}")
    c.set("hm:x:y", 1)
    c.close()


def test_wrong_password_is_one_clear_line(password_server: tuple[EmbeddedRedis, str]) -> None:
    server, _ = password_server
    with pytest.raises(RedisUnavailableError) as info:
        connect(f"unix://:Zq9-not-it@{server.socket_path}")
    text = str(info.value)
    assert "refused the credentials" in text and "\n" not in text
    assert "Zq9-not-it" not in text, "the password must never be printed"


def test_no_password_is_refused(password_server: tuple[EmbeddedRedis, str]) -> None:
    server, _ = password_server
    with pytest.raises(RedisUnavailableError, match="refused the credentials"):
        connect(f"unix://{server.socket_path}")


def test_unreachable_host() -> None:
    with pytest.raises(
        RedisUnavailableError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"
    ):
        connect("redis://127.0.0.1:1/0", timeout_s=0.5)


def test_malformed_url() -> None:
    with pytest.raises(UsageError):
        connect("redis://host:notaport/0")


def test_redact_url() -> None:
    assert redact_url("redis://u:p@h:6379/0") == "redis://u:***@h:6379/0"
    assert redact_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"
