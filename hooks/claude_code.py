"""The Claude Code side of the hooks: the JSON on a hook's stdin, and ``hooks install``.

Claude Code runs a command hook with a JSON object on stdin (``session_id``,
``cwd``, ``hook_event_name``, ``tool_name``, ``tool_input``,
``tool_use_id``, ...) and reads its exit code: 0 lets the agent carry on,
2 blocks. We read that JSON when stdin is not a terminal, with a size cap
and a short deadline, so a hook started from a script that never closes
stdin does not hang. ``install`` merges our entries into
``.claude/settings.json`` and leaves every other entry alone.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hivemind.swarm.errors import UsageError

__all__ = [
    "HOOK_ENTRIES",
    "MAX_STDIN_BYTES",
    "InstallResult",
    "StdinPayload",
    "default_command_prefix",
    "install",
    "read_stdin_json",
]

MAX_STDIN_BYTES = 8 * 1024 * 1024
# Claude Code writes the JSON before the hook's interpreter has even started,
# so a quarter second is generous; past it we assume nobody will write.
FIRST_BYTE_TIMEOUT_S = 0.25
TOTAL_TIMEOUT_S = 2.0

StdinStatus = Literal["absent", "empty", "ok", "malformed", "huge", "not_object"]


@dataclass(slots=True)
class StdinPayload:
    """What stdin held: the parsed object (``ok`` only) and why not otherwise."""

    status: StdinStatus
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def warning(self) -> str | None:
        """A one-line warning for a bad payload (``empty`` is judged by the caller)."""
        return {
            "malformed": "stdin is not valid JSON; ignored",
            "huge": f"stdin is larger than {MAX_STDIN_BYTES // (1024 * 1024)} MiB; ignored",
            "not_object": "stdin JSON is not an object; ignored",
        }.get(self.status)

    def get(self, *path: str) -> str | None:
        """A string (or number) found at ``path`` in the payload, else ``None``."""
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        if isinstance(node, str):
            return node or None
        if isinstance(node, int | float) and not isinstance(node, bool):
            return str(node)
        return None


def read_stdin_json(
    fd: int | None = None,
    *,
    max_bytes: int = MAX_STDIN_BYTES,
    first_byte_timeout_s: float = FIRST_BYTE_TIMEOUT_S,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
) -> StdinPayload:
    """Read Claude Code's hook JSON from ``fd`` (default stdin) without ever hanging.

    Returns ``absent`` for a terminal, a closed stdin, or a pipe nobody
    writes to within ``first_byte_timeout_s``; ``huge`` past ``max_bytes``
    (the rest is left unread); ``empty``, ``malformed`` or ``not_object`` for
    payloads we cannot use; ``ok`` with the object otherwise.
    """
    if fd is None:
        if sys.stdin is None:
            return StdinPayload("absent")
        try:
            fd = sys.stdin.fileno()
        except (ValueError, OSError):
            return StdinPayload("absent")
    try:
        if os.isatty(fd):
            return StdinPayload("absent")
    except OSError:
        return StdinPayload("absent")
    chunks: list[bytes] = []
    size = 0
    start = time.monotonic()
    while True:
        limit = first_byte_timeout_s if not chunks else total_timeout_s
        remaining = start + limit - time.monotonic()
        if remaining <= 0:
            if not chunks:
                return StdinPayload("absent")
            break  # a writer that stalls mid-payload: parse what came
        try:
            ready, _, _ = select.select([fd], [], [], remaining)
        except (OSError, ValueError):
            return StdinPayload("absent")
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return StdinPayload("absent")
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return StdinPayload("huge")
    raw = b"".join(chunks)
    if not raw.strip():
        return StdinPayload("empty")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        return StdinPayload("malformed")
    if not isinstance(data, dict):
        return StdinPayload("not_object")
    return StdinPayload("ok", data)


# (event, matcher or None, hooks subcommand + fixed flags)
HOOK_ENTRIES: tuple[tuple[str, str | None, str], ...] = (
    ("SessionStart", None, "session-start"),
    ("PreToolUse", "Task", "pre-task"),
    ("PostToolUse", "Task", "post-task"),
    ("PostToolUse", "Write|Edit|MultiEdit|NotebookEdit", "post-edit"),
    ("Notification", None, "notify"),
    ("Stop", None, "notify --level info"),
    ("SessionEnd", None, "session-end"),
)
HOOK_TIMEOUT_S = 10


def default_command_prefix() -> str:
    """The ``hivemind hooks`` command line to write into settings.

    Prefers the ``hivemind`` script next to the running interpreter (the
    venv this package is installed in), so the hook works even when the
    venv is not on Claude Code's ``PATH``.
    """
    sibling = Path(sys.executable).with_name("hivemind")
    exe = str(sibling) if os.access(sibling, os.X_OK) else (shutil.which("hivemind") or "hivemind")
    return f"{shlex.quote(exe)} hooks"


@dataclass(slots=True)
class InstallResult:
    """What ``install`` did: the file, entries added, updated and already present."""

    path: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    written: bool = False


def _ours(command: str, sub: str) -> bool:
    words = command.split()
    return "hooks" in words and any("hivemind" in w for w in words) and sub.split()[0] in words


def install(
    project_root: Path,
    *,
    command_prefix: str | None = None,
    settings_file: Path | None = None,
    dry_run: bool = False,
) -> InstallResult:
    """Merge our hook entries into ``<root>/.claude/settings.json``; idempotent.

    An entry already pointing at ``hivemind hooks <sub>`` is kept (or its
    command updated if the executable moved); everything else in the file is
    preserved. Raises :class:`UsageError` if the file exists but is not a
    JSON object (we never overwrite what we cannot read).
    """
    path = settings_file or project_root / ".claude" / "settings.json"
    prefix = command_prefix or default_command_prefix()
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}; fix or move it first") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{path} does not hold a JSON object; fix or move it first")
        settings = loaded
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise UsageError(f"{path}: 'hooks' is not an object; fix it first")
    result = InstallResult(path)
    for event, matcher, sub in HOOK_ENTRIES:
        command = f"{prefix} {sub}"
        label = f"{event}[{matcher or '*'}]: {sub}"
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise UsageError(f"{path}: hooks.{event} is not a list; fix it first")
        group = next(
            (g for g in groups if isinstance(g, dict) and (g.get("matcher") or None) == matcher),
            None,
        )
        if group is None:
            group = {"matcher": matcher, "hooks": []} if matcher else {"hooks": []}
            groups.append(group)
        entries = group.setdefault("hooks", [])
        mine = [h for h in entries if isinstance(h, dict) and _ours(str(h.get("command", "")), sub)]
        if any(h.get("command") == command for h in mine):
            result.kept.append(label)
        elif mine:
            mine[0]["command"] = command
            result.updated.append(label)
        else:
            entries.append({"type": "command", "command": command, "timeout": HOOK_TIMEOUT_S})
            result.added.append(label)
    if (result.added or result.updated) and not dry_run:
        _write_keeping_mode(path, json.dumps(settings, indent=2) + "\n")
        result.written = True
    return result


def _write_keeping_mode(path: Path, text: str) -> None:
    """Atomically replace ``path``, keeping its mode (0644 for a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
