"""The HMAC key that signs commands to guarded processes.

From ``HIVEMIND_SECRET`` when set, else from ``<state folder>/secret``
(32 random bytes, hex, mode 0600, created on first use). A key file that
others can read is refused. The key is never logged or printed.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import StateFolderError
from hivemind.swarm.paths import ensure_private_dir, write_private_file

if TYPE_CHECKING:
    from hivemind.swarm.settings import Settings

__all__ = ["SECRET_FILE", "load_secret", "read_secret"]

SECRET_FILE = "secret"


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
