"""Connecting to Redis by URL, with every failure turned into one clear line.

``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs are accepted, with an
ACL user and password in the URL. Nothing else in hivemind knows whether the
server is the embedded one or an external one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from hivemind.swarm.errors import RedisUnavailableError, UsageError

__all__ = ["connect", "redact_url", "strip_password"]


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to print).

    Both places redis-py takes a password from are covered: the userinfo
    (``redis://user:pw@host``) and a ``password=`` query parameter.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = netloc.rpartition("@")[2]
            netloc = f"{user}:***@{host}"
    except ValueError:  # a malformed port, say: show nothing after the scheme
        return url.split("://", 1)[0] + "://***"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" and eq else f"{k}{eq}{v}"
        for k, eq, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def strip_password(url: str) -> str:
    """Return ``url`` without its password (userinfo or ``password=`` query; the rest kept)."""
    parts = urlsplit(url)
    query = "&".join(
        item
        for item in parts.query.split("&")
        if item and item.partition("=")[0].lower() != "password"
    )
    if parts.password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username}@{host}" if parts.username else host
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def connect(url: str, *, timeout_s: float = 2.0, check: bool = True) -> redis.Redis:
    """Return a client for ``url`` (bytes responses), PINGed once if ``check``.

    Raises :class:`UsageError` for a malformed URL and
    :class:`RedisUnavailableError` for an unreachable server or refused
    credentials, each with a one-line message that never contains the password.
    """
    shown = redact_url(url)
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise UsageError(f"bad Redis URL {shown}: {exc}") from None
    if not check:
        return client
    try:
        client.ping()
    except redis.AuthenticationError:
        client.close()
        raise RedisUnavailableError(f"Redis at {shown} refused the credentials") from None
    except redis.ResponseError as exc:
        text = str(exc)
        if text.startswith("MISCONF"):
            # Redis 6 refuses even PING while it cannot write its AOF/RDB: it is
            # reachable and reads work, so status can still show why.
            return client
        client.close()
        if "NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text:
            raise RedisUnavailableError(
                f"Redis at {shown} refused the credentials ({text.split('.')[0]})"
            ) from None
        raise RedisUnavailableError(
            f"Redis at {shown} answered PING with an error: {text}"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RedisUnavailableError(f"cannot reach Redis at {shown}: {reason}") from None
    return client
