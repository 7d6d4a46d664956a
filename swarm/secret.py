"""The HMAC key that signs commands to guarded processes.

From ``HIVEMIND_SECRET`` when set (at least 32 bytes, else refused), else
from ``<state folder>/secret`` (32 random bytes as 64 hex characters, mode
0600). The file is created without a race: the key is written to a private
temporary file and ``link``-ed into place, which fails if another process
got there first; every process then reads the one file that won, so six
processes starting on a fresh folder all end up with the same key. A key
file that others can read, that is a symlink, or that is not ours is
refused. The key is never logged or printed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import ConfigError, StateFolderError
from hivemind.swarm.paths import ensure_state_dir, read_private_text

TYPE_CHECKING = False  # no typing at run time: it costs a guarded process ~0.5 MB
if TYPE_CHECKING:
    from hivemind.swarm.settings import Settings

__all__ = [
    "AGENT_SECRET_FILE",
    "MIN_SECRET_BYTES",
    "REDIS_URL_FILE",
    "SECRET_FILE",
    "check_secret",
    "fingerprint",
    "load_secret",
    "read_node_file",
    "read_secret",
]

SECRET_FILE = "secret"
MIN_SECRET_BYTES = 32
REDIS_URL_FILE = "redis-url"  # an external Redis URL with its password, for the agents (0600)
AGENT_SECRET_FILE = "agent-secret"  # the key for the agents when it came from HIVEMIND_SECRET


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of ``key`` (16 hex of its SHA-256): names it, never reveals it."""
    import hashlib

    return hashlib.sha256(b"hivemind-key-id:" + key).hexdigest()[:16]


def read_node_file(path: Path) -> str | None:
    """The stripped text of a private state-folder file (ours, 0600), else ``None``.

    How an agent finds a secret on its node; a missing or untrusted file is
    simply not a candidate.
    """
    try:
        return read_private_text(path, max_bytes=8192, secret=True).strip()
    except (OSError, StateFolderError):
        return None


def check_secret(value: str, where: str = "HIVEMIND_SECRET") -> bytes:
    """Return ``value`` as key bytes; raise :class:`ConfigError` if shorter than 32 bytes."""
    key = value.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where} must be at least {MIN_SECRET_BYTES} bytes (it is {len(key)}); make one "
            "with `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return key


def _create(path: Path) -> None:
    """Put a fresh key at ``path`` unless someone already did (exclusive, via ``link``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(os.urandom(32).hex() + "\n")  # as secrets.token_hex(32), without hashlib
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic and exclusive: the loser reads the winner's key
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_secret(state_dir: Path, env_value: str | None = None) -> bytes:
    """Return the key: ``env_value`` if given, else the state folder's file (made if missing).

    Raises :class:`ConfigError` for a short ``env_value`` and
    :class:`StateFolderError` for a state folder or key file we cannot trust.
    """
    if env_value:
        return check_secret(env_value)
    ensure_state_dir(state_dir)
    path = state_dir / SECRET_FILE
    try:
        text = read_private_text(path, max_bytes=4096, secret=True)
    except FileNotFoundError:
        _create(path)
        text = read_private_text(path, max_bytes=4096, secret=True)
    key = text.strip().encode()
    if len(key) < MIN_SECRET_BYTES:
        raise StateFolderError(
            f"secret file {path} holds {len(key)} bytes, fewer than {MIN_SECRET_BYTES}; "
            "delete it and hivemind makes a new one"
        )
    return key


def load_secret(settings: Settings) -> bytes:
    """Return the key for ``settings`` (flag/env ``secret`` or the state folder's file)."""
    env = settings.secret.get_secret_value() if settings.secret is not None else None
    return read_secret(settings.state_dir, env or env_str("secret"))
