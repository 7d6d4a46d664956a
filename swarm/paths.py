"""Where hivemind keeps its state on disk, and the checks that keep it ours.

The project root is ``$CLAUDE_PROJECT_DIR``, else the enclosing git root (one
owned by us: another user's ``.git`` in a shared folder above us is passed
over, as git's ``safe.directory`` does), else the current folder, so a hook
fired from a sub-folder and ``swarm up`` fired from the root agree on one
state folder (``<root>/.hivemind``).

A state folder is trusted only if hivemind made it: on creation we write a
marker file (``.hivemind-state``) and a ``.gitignore`` holding ``*``, and
every later use checks, with ``lstat`` (no symlinks), that the folder and
the marker belong to us and nobody else can read or write them. A
``.hivemind/`` that arrived in a cloned repository (git makes it 0755, with
no marker, or a marker that is not ours) is refused, so nothing in it is
ever read, replayed or executed. Files in it are opened with ``O_NOFOLLOW``
and checked the same way (:func:`open_private`).

This module imports nothing heavy: the hooks and the guarded-process
runtime use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

from hivemind.swarm.env import env_str
from hivemind.swarm.errors import StateFolderError

__all__ = [
    "GITIGNORE_FILE",
    "MARKER_FILE",
    "STATE_DIRNAME",
    "default_state_dir",
    "ensure_private_dir",
    "ensure_state_dir",
    "env_redis_url",
    "open_private",
    "project_root",
    "read_private_text",
    "read_url_file",
    "short_socket_dir",
    "trusted_git_root",
    "verify_state_dir",
    "write_private_file",
]

STATE_DIRNAME = ".hivemind"
MARKER_FILE = ".hivemind-state"
GITIGNORE_FILE = ".gitignore"
_MARKER_TEXT = "hivemind state folder v1: made by hivemind, refused if anyone else made it\n"
_GITIGNORE_TEXT = "# written by hivemind: nothing in this folder belongs in git\n*\n"
# sun_path is 108 bytes on Linux, including the trailing NUL.
_MAX_SOCKET_PATH = 100
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def _uid() -> int:
    return os.geteuid()


def trusted_git_root(folder: Path) -> bool:
    """True if ``folder`` holds a ``.git`` that we own, in a folder that we own.

    Another user's ``.git`` (say in a shared, world-writable temp folder
    above ours) is not a project root of ours.
    """
    try:
        git = os.lstat(folder / ".git")
        here = os.lstat(folder)
    except OSError:
        return False
    return git.st_uid == _uid() and here.st_uid == _uid()


def project_root(cwd: Path | None = None) -> Path:
    """Return the project root: ``$CLAUDE_PROJECT_DIR``, our git root, or ``cwd``."""
    env = os.environ.get("CLAUDE_PROJECT_DIR")
    if env:
        return Path(env).expanduser().resolve()
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if os.path.lexists(folder / ".git") and trusted_git_root(folder):
            return folder
    return here


def default_state_dir(cwd: Path | None = None) -> Path:
    """Return ``<project root>/.hivemind``, honouring ``HIVEMIND_STATE_DIR``."""
    env = env_str("state_dir")
    if env:
        return Path(env).expanduser().resolve()
    return project_root(cwd) / STATE_DIRNAME


def _check_dir(path: Path, what: str, *, readable_ok: bool = False) -> os.stat_result:
    """``lstat`` ``path``; raise unless it is our own directory that only we can use.

    ``readable_ok`` skips the "readable by others" check (the state folder
    checks its marker first, so a cloned folder is named as such).
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise StateFolderError(f"cannot use {what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise StateFolderError(f"{what} {path} is a symlink; hivemind does not follow it")
    if not stat.S_ISDIR(info.st_mode):
        raise StateFolderError(f"{what} {path} is not a directory")
    if info.st_uid != _uid():
        raise StateFolderError(
            f"{what} {path} belongs to uid {info.st_uid}, not to us (uid {_uid()}); "
            "hivemind only uses folders it made"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateFolderError(
            f"{what} {path} is writable by other users (mode {mode:o}); run `chmod 700 {path}`"
        )
    if mode & _OTHERS and not readable_ok:
        raise StateFolderError(
            f"{what} {path} is readable by other users (mode {mode:o}); run `chmod 700 {path}`"
        )
    return info


def ensure_private_dir(path: Path, what: str = "state folder") -> Path:
    """Create ``path`` (mode 0700) if missing, then check it with ``lstat``.

    Raises :class:`StateFolderError` when it cannot be created, is a
    symlink or not a directory, belongs to another user, or others can
    read or write it (someone else could plant a socket or read a secret).
    """
    try:
        os.mkdir(path, 0o700)  # no parents: the state folder above is made (and marked) first
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateFolderError(f"cannot use {what} {path}: {exc.strerror or exc}") from exc
    _check_dir(path, what)
    return path


def open_private(path: Path, flags: int, *, secret: bool = False) -> int:
    """Open a file of a state folder without following a symlink; return the fd.

    ``flags`` are ``os.open`` flags (``O_CREAT`` makes it mode 0600). The
    file must be a regular file we own that nobody else can write (nor
    read, with ``secret``), else :class:`StateFolderError`; other
    ``OSError`` (``FileNotFoundError``...) pass through.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise StateFolderError(f"{path} is a symlink; hivemind does not follow it") from None
        raise
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            raise StateFolderError(f"{path} is not a regular file")
        if info.st_uid != _uid():
            raise StateFolderError(f"{path} belongs to uid {info.st_uid}, not to us; not used")
        bad = _OTHERS if secret else (stat.S_IWGRP | stat.S_IWOTH)
        if mode & bad:
            who = "readable" if secret else "writable"
            raise StateFolderError(
                f"{path} is {who} by others (mode {mode:o}); run `chmod 600 {path}`"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private_text(path: Path, *, max_bytes: int = 1 << 20, secret: bool = False) -> str:
    """Read a (small) file of a state folder through :func:`open_private`."""
    fd = open_private(path, os.O_RDONLY, secret=secret)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(max_bytes).decode("utf-8", "replace")


def read_url_file(path: Path) -> str:
    """The Redis URL held in ``path`` (ours, mode 0600, not a symlink): no password in ``ps``.

    Raises :class:`StateFolderError` when the file is missing, empty, or
    others could read or write it.
    """
    path = Path(path).expanduser()
    try:
        url = read_private_text(path, max_bytes=8192, secret=True).strip()
    except StateFolderError as exc:
        raise StateFolderError(f"Redis URL file: {exc}") from None
    except OSError as exc:
        why = exc.strerror or exc
        raise StateFolderError(f"cannot read Redis URL file {path}: {why}") from None
    if not url:
        raise StateFolderError(f"Redis URL file {path} is empty")
    return url


def env_redis_url() -> str | None:
    """``HIVEMIND_REDIS_URL``, else the URL in the file ``HIVEMIND_REDIS_URL_FILE`` names."""
    url = env_str("redis_url")
    if url:
        return url
    file = env_str("redis_url_file")
    return read_url_file(Path(file)) if file else None


def write_private_file(path: Path, data: str) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600 (never through a symlink)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)  # replaces a symlink itself, never its target
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` (0600) holding ``text`` unless it exists; True if we made it."""
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def _just_made(path: Path, within_s: float = 2.0) -> bool:
    """True if the folder changed in the last ``within_s`` seconds (being made now)."""
    try:
        return time.time() - os.lstat(path).st_mtime < within_s
    except OSError:
        return False


def _check_marker(path: Path) -> None:
    """Raise unless ``path`` holds our marker, as a 0600 file we own."""
    marker = path / MARKER_FILE
    missing = StateFolderError(
        f"state folder {path} was not made by hivemind (no {MARKER_FILE}): it may have "
        "come with a cloned repository or an archive, so nothing in it is used; "
        f"move it away (`mv {path} {path}.untrusted`) and hivemind makes a fresh one"
    )
    text: str | None = None
    for _ in range(100):  # another of our processes may be writing it right now
        try:
            text = read_private_text(marker, max_bytes=4096, secret=True)
        except FileNotFoundError:
            if _just_made(path):  # a folder made a moment ago: its maker may be about to
                time.sleep(0.01)  # write the marker (50 cold hooks at once raced here)
                continue
            raise missing from None
        except (StateFolderError, OSError) as exc:
            raise StateFolderError(
                f"state folder {path} was not made by hivemind ({exc}), so nothing in it is "
                f"used; move it away (`mv {path} {path}.untrusted`)"
            ) from None
        if text:
            break
        time.sleep(0.01)
    if text is None:
        raise missing
    if text != _MARKER_TEXT:
        raise StateFolderError(
            f"state folder {path} was not made by hivemind (its {MARKER_FILE} is not ours), "
            f"so nothing in it is used; move it away (`mv {path} {path}.untrusted`)"
        )


def verify_state_dir(path: Path) -> bool:
    """False if ``path`` does not exist; True if it is a state folder hivemind made.

    Raises :class:`StateFolderError` for anything else (someone else's
    folder, a symlink, a folder others can use, no marker).
    """
    if not os.path.lexists(path):
        return False
    _check_state_dir(path)
    return True


def _check_state_dir(path: Path) -> None:
    _check_dir(path, "state folder", readable_ok=True)
    _check_marker(path)
    _check_dir(path, "state folder")


def _adopt_if_empty(path: Path) -> None:
    """Mark an empty folder of ours (say made by ``mkdir``) as a state folder."""
    try:
        info = os.lstat(path)
        entries = os.listdir(path)
    except OSError as exc:
        raise StateFolderError(f"cannot use state folder {path}: {exc.strerror or exc}") from exc
    if entries or stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return  # the full check explains what is wrong
    if info.st_uid != _uid() or stat.S_IMODE(info.st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
        return
    os.chmod(path, 0o700, follow_symlinks=False)
    _create_exclusive(path / MARKER_FILE, _MARKER_TEXT)


def ensure_state_dir(path: Path) -> Path:
    """Create the state folder (0700, marker, ``.gitignore``) or check the one there.

    An existing folder is used only if hivemind made it (see the module
    docstring); an empty folder of ours is adopted. Raises
    :class:`StateFolderError` otherwise, with what to do in the message.
    """
    if not os.path.lexists(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # another of our processes made it a moment ago
        except OSError as exc:
            why = exc.strerror or exc
            raise StateFolderError(f"cannot use state folder {path}: {why}") from exc
    if not os.path.lexists(path / MARKER_FILE):
        _adopt_if_empty(path)
    _check_state_dir(path)
    _create_exclusive(path / GITIGNORE_FILE, _GITIGNORE_TEXT)
    return path


def short_socket_dir(state_dir: Path) -> Path:
    """Return a private folder whose socket path fits in ``sun_path``.

    The socket lives in the state folder when the path is short enough, else
    in ``$TMPDIR/hivemind-<uid>/<hash of state folder>``. That shared-temp
    fallback is checked like the state folder (ours, 0700, not a symlink)
    and refused otherwise: another user may have made it first.
    """
    preferred = state_dir / "redis"
    if len(str(preferred / "redis.sock")) <= _MAX_SOCKET_PATH:
        return preferred
    import hashlib  # here, not at the top: guarded processes import this module
    import tempfile

    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"hivemind-{os.getuid()}"
    ensure_private_dir(base, "socket folder")
    return base / digest
