"""The HMAC key that signs commands to guarded processes.

From ``HIVEMIND_SECRET`` when set, else from ``<state folder>/secret``
(32 random bytes, hex, mode 0600, created on first use). A key file that
others can read is refused. The key is never logged or printed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import StateFolderError
from hivemind.swarm.paths import ensure_private_dir, write_private_file

if TYPE_CHECKING:
    from hivemind.swarm.settings import Settings

__all__ = [
    "AGENT_SECRET_FILE",
    "REDIS_URL_FILE",
    "SECRET_FILE",
    "fingerprint",
    "load_secret",
    "read_private_text",
    "read_secret",
]

SECRET_FILE = "secret"
REDIS_URL_FILE = "redis-url"  # an external Redis URL with its password, for the agents (0600)
AGENT_SECRET_FILE = "agent-secret"  # the key for the agents when it came from HIVEMIND_SECRET


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of ``key`` (16 hex of its SHA-256): names it, never reveals it."""
    import hashlib

    return hashlib.sha256(b"hivemind-key-id:" + key).hexdigest()[:16]


def read_private_text(path: Path) -> str | None:
    """The stripped text of ``path`` if it exists and only its owner can read it, else ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None
        return fh.read().strip()


def read_secret(state_dir: Path, env_value: str | None = None) -> bytes:
    """Return the key: ``env_value`` if given, else the state folder's file (made if missing)."""
    if env_value:
        return env_value.encode()
    ensure_private_dir(state_dir)
    path = state_dir / SECRET_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        import secrets

        write_private_file(path, secrets.token_hex(32))
        info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StateFolderError(
            f"secret file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return path.read_text(encoding="ascii").strip().encode()


def load_secret(settings: Settings) -> bytes:
    """Return the key for ``settings`` (flag/env ``secret`` or the state folder's file)."""
    env = settings.secret.get_secret_value() if settings.secret is not None else None
    return read_secret(settings.state_dir, env or env_str("secret"))
