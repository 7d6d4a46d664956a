"""Where hivemind keeps its state on disk, and the checks that keep it private.

The project root is ``$CLAUDE_PROJECT_DIR``, else the enclosing git root, else
the current folder, so a hook fired from a sub-folder and ``swarm up`` fired
from the root agree on one state folder (``<root>/.hivemind``). This module
imports nothing heavy: the hooks path uses it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import StateFolderError

__all__ = [
    "STATE_DIRNAME",
    "default_state_dir",
    "ensure_private_dir",
    "project_root",
    "short_socket_dir",
    "write_private_file",
]

STATE_DIRNAME = ".hivemind"
# sun_path is 108 bytes on Linux, including the trailing NUL.
_MAX_SOCKET_PATH = 100


def project_root(cwd: Path | None = None) -> Path:
    """Return the project root: ``$CLAUDE_PROJECT_DIR``, the git root, or ``cwd``."""
    env = os.environ.get("CLAUDE_PROJECT_DIR")
    if env:
        return Path(env).expanduser().resolve()
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def default_state_dir(cwd: Path | None = None) -> Path:
    """Return ``<project root>/.hivemind``, honouring ``HIVEMIND_STATE_DIR``."""
    env = env_str("state_dir")
    if env:
        return Path(env).expanduser().resolve()
    return project_root(cwd) / STATE_DIRNAME


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 if missing and refuse one others can write.

    Raises :class:`StateFolderError` when the folder cannot be created, is not
    a directory, or is group/world-writable (someone else could plant a socket
    or a secret there).
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise StateFolderError(f"cannot use state folder {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StateFolderError(f"state folder {path} is not a directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateFolderError(
            f"state folder {path} is writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); run `chmod 700 {path}`"
        )
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StateFolderError(f"state folder {path} is not readable and writable by us")
    return path


def write_private_file(path: Path, data: str) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def short_socket_dir(state_dir: Path) -> Path:
    """Return a private folder whose socket path fits in ``sun_path``.

    The socket lives in the state folder when the path is short enough, else
    in ``$TMPDIR/hivemind-<uid>/<hash of state folder>`` (also 0700).
    """
    preferred = state_dir / "redis"
    if len(str(preferred / "redis.sock")) <= _MAX_SOCKET_PATH:
        return preferred
    import hashlib  # here, not at the top: guarded processes import this module
    import tempfile

    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"hivemind-{os.getuid()}"
    ensure_private_dir(base)
    return base / digest
