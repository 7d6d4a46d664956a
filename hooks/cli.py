"""``hivemind hooks ...``: claude-flow compatible hooks, fast enough for every edit.

Accepts claude-flow's flags (``--description``, ``--task-id``, ``--agent-id``,
``--file``, ``--memory-key``, ``--session-id``, ``--format``, ...) as
``--flag value`` or ``--flag=value``, ``snake_case`` or ``camelCase``
spellings too, and ignores flags it does not know with a warning on stderr.
A hook exits 0 and prints nothing on stdout unless ``--format json`` (or the
command's purpose is to print: ``session-restore``, ``session-end
--generate-summary``); an internal error is logged to stderr and to
``<state>/hooks.log`` and still exits 0 unless ``--strict``. When Redis is
unreachable a write is journaled on local disk (fsync'd) and replayed by
the next hook that reaches Redis; ``hooks.log`` says which.

This module is on the hot path: it imports no typer, rich, pydantic or redis.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

from hivemind.hooks.claude_code import StdinPayload, read_stdin_json
from hivemind.hooks.commands import HANDLERS, HookArgs, Outcome, run_hook
from hivemind.swarm.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from hivemind.swarm.safe_text import printable

__all__ = ["main", "parse_args"]

LOG_MAX_BYTES = 1024 * 1024

VALUE_FLAGS = frozenset(
    {
        "description",
        "task-id",
        "agent-id",
        "file",
        "memory-key",
        "session-id",
        "format",
        "message",
        "level",
        "status",
        "namespace",
        "memory-namespace",
        "export",
        "operation",
        "results",
        "metrics",
        "state-dir",
        "driver",
        "command",
        "settings",
    }
)
BOOL_FLAGS = frozenset(
    {
        "strict",
        "no-stdin",
        "export-metrics",
        "generate-summary",
        "json",
        "help",
        "dry-run",
        "debug",
    }
)
SHORT_FLAGS = {"-d": "description", "-s": "session-id", "-h": "help"}
TRUE_WORDS = {"true": True, "yes": True, "1": True, "on": True}
FALSE_WORDS = {"false": False, "no": False, "0": False, "off": False}
COMMANDS = (*HANDLERS, "install")

USAGE = """\
usage: hivemind hooks COMMAND [flags]

claude-flow compatible hooks; also reads Claude Code's hook JSON on stdin.

commands:
  pre-task        --description TEXT [--task-id T] [--agent-id A]
  post-task       --task-id T [--status completed|failed|partial]
  pre-edit        --file F [--operation OP]
  post-edit       --file F [--memory-key K] [--namespace MEMORY_NS]
  notify          --message TEXT [--level info|warning|error]
  session-start   [--session-id S]
  session-restore --session-id S        (prints what was stored)
  session-end     [--session-id S] [--export-metrics] [--export FILE] [--generate-summary]
  install         [--dry-run] [--command PREFIX] [--settings FILE]
                  write the hook entries into .claude/settings.json

common flags:
  --format json   print the result as JSON on stdout
  --strict        exit 1 on errors (default: warn on stderr, exit 0)
  --no-stdin      do not read Claude Code JSON from stdin
  --state-dir DIR state folder [default: <project root>/.hivemind]
Unknown flags are ignored with a warning.
"""

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _flag_name(raw: str) -> str:
    return _CAMEL.sub(r"-\1", raw).lower().replace("_", "-")


def parse_args(argv: list[str]) -> tuple[HookArgs, list[str]]:
    """Parse ``COMMAND [flags]``; return the arguments and warnings.

    The command must be one of :data:`COMMANDS` (checked by the caller).
    """
    args = HookArgs(command=argv[0] if argv else "")
    warnings: list[str] = []
    rest = argv[1:]
    i = 0
    while i < len(rest):
        tok = rest[i]
        i += 1
        if tok == "--":
            args.positionals.extend(rest[i:])
            break
        if tok.startswith("--") and len(tok) > 2:
            raw, eq, value = tok[2:].partition("=")
            name = _flag_name(raw)
        elif tok in SHORT_FLAGS:
            name, eq, value = SHORT_FLAGS[tok], "", ""
        elif tok.startswith("-") and len(tok) > 1 and not tok[1:2].isdigit():
            raw, eq, value = tok[1:].partition("=")
            name = "-" + raw  # an unknown short flag: never matches a known one
        else:
            args.positionals.append(tok)
            continue
        if name in VALUE_FLAGS:
            if not eq:
                if i >= len(rest):
                    warnings.append(f"flag --{name} needs a value; ignored")
                    continue
                value = rest[i]
                i += 1
            args.values[name] = value
        elif name in BOOL_FLAGS:
            word = value.lower() if eq else (rest[i].lower() if i < len(rest) else "")
            if word in TRUE_WORDS or word in FALSE_WORDS:
                args.bools[name] = TRUE_WORDS.get(word, False)
                if not eq:
                    i += 1
            else:
                args.bools[name] = True
                if eq:
                    warnings.append(f"flag --{name}={value}: not a boolean; taken as true")
        else:
            if not eq and i < len(rest) and not rest[i].startswith("-"):
                i += 1  # claude-flow style `--unknown-flag value`
            shown = name if name.startswith("-") else f"--{name}"
            warnings.append(f"unknown flag {shown} ignored")
    if args.values.get("format", "").lower() == "json":
        args.bools["json"] = True
    return args, warnings


def _log(state_dir: Path | None, lines: list[str]) -> None:
    """Append to ``<state>/hooks.log`` (truncated past 1 MiB); never raises."""
    try:
        from hivemind.swarm.paths import default_state_dir, ensure_state_dir, open_private

        folder = ensure_state_dir(state_dir or default_state_dir())  # a planted one raises
        log = folder / "hooks.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        fd = open_private(log, flags)  # O_NOFOLLOW: a planted symlink is refused
        if os.fstat(fd).st_size > LOG_MAX_BYTES:
            os.close(fd)
            log.unlink()
            fd = open_private(log, flags)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            for line in lines:
                fh.write(f"{stamp} pid {os.getpid()} {line}\n")
    except Exception:
        pass


def _explain(exc: Exception) -> str:
    """One line for a hook failure; a full Redis is named as such, with the way out."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if text.startswith("OOM") or "maxmemory" in text:
        return (
            "Redis is full (maxmemory reached), nothing was recorded: delete old sessions, "
            "or raise HIVEMIND_REDIS_MAXMEMORY_MB (embedded server, default 512) and restart it"
        )
    return f"{type(exc).__name__}: {text}"


def _install(args: HookArgs) -> int:
    from hivemind.hooks.claude_code import install
    from hivemind.swarm.errors import HivemindError
    from hivemind.swarm.paths import project_root

    settings = args.flag("settings")
    try:
        result = install(
            project_root(),
            command_prefix=args.flag("command"),
            settings_file=Path(settings) if settings else None,
            dry_run=args.truthy("dry-run"),
        )
    except HivemindError as exc:
        _say(str(exc))
        return exc.exit_code
    if args.truthy("json"):
        print(
            json.dumps(
                {
                    "settings": str(result.path),
                    "added": result.added,
                    "updated": result.updated,
                    "kept": result.kept,
                    "written": result.written,
                }
            )
        )
        return EXIT_OK
    verb = "would write" if args.truthy("dry-run") else "wrote"
    if result.added or result.updated:
        print(f"{verb} {len(result.added)} new, {len(result.updated)} updated hook entries")
        for label in result.added + result.updated:
            print(f"  {label}")
        print(f"to {result.path}")
    else:
        print(f"{result.path}: all {len(result.kept)} hivemind hook entries already present")
    return EXIT_OK


def _say(line: str) -> None:
    """Print ``hivemind hooks: <line>`` on stderr as one line, whatever it echoes back
    (control characters and line separators escaped: :func:`printable`)."""
    print(printable(f"hivemind hooks: {line}"), file=sys.stderr)


def _emit(args: HookArgs, out: Outcome) -> None:
    for warning in out.warnings:
        _say(f"warning: {warning}")
    if args.truthy("json"):
        print(json.dumps(out.as_json(), default=str))
    elif out.text:
        print(out.text)


def main(argv: list[str]) -> int:
    """Run ``hivemind hooks`` on ``argv`` (without the leading ``hooks``); return the exit code."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] not in COMMANDS:
        _say(f"unknown command {argv[0]!r} (one of: {', '.join(COMMANDS)})")
        return EXIT_USAGE
    args, warnings = parse_args(argv)
    if args.truthy("help"):
        print(USAGE, end="")
        return EXIT_OK
    for warning in warnings:
        _say(f"warning: {warning}")
    if args.command == "install":
        return _install(args)
    state = args.flag("state-dir")
    state_dir = Path(state).expanduser() if state else None
    if not args.truthy("no-stdin"):
        args.stdin = read_stdin_json()
        if args.stdin.warning:
            _say(f"warning: {args.stdin.warning}")
            args.stdin = StdinPayload(args.stdin.status)
    strict = args.truthy("strict")
    try:
        out = run_hook(args, state_dir=state_dir, driver=args.flag("driver") or "auto")
    except Exception as exc:
        line = f"{args.command} failed: {_explain(exc)}"
        _say(f"error: {line}")
        if args.truthy("debug"):
            traceback.print_exc()
        _log(state_dir, [line, *traceback.format_exc().splitlines()[-6:]])
        if args.truthy("json"):
            print(json.dumps({"ok": False, "command": args.command, "error": line}))
        return EXIT_FAILURE if strict else EXIT_OK
    _emit(args, out)
    lines = [f"{args.command}: warning: {w}" for w in out.warnings] + out.log_lines
    if lines:
        _log(state_dir, lines)
    return EXIT_FAILURE if (strict and out.failed) else EXIT_OK
