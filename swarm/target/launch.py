"""``hivemind run -- CMD``: start a Python program guarded, with no change to its code.

The child gets ``swarm/target/bootstrap`` first on ``PYTHONPATH``; its
``sitecustomize`` calls :func:`hivemind.attach` at interpreter start.
Settings travel as ``HIVEMIND_*`` variables. Ctrl-C and SIGTERM are passed
on to the child, and its exit code is returned.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from hivemind.swarm.errors import HivemindError, UsageError

__all__ = ["bootstrap_dir", "guarded_env", "run_guarded"]


def bootstrap_dir() -> str:
    """The folder holding hivemind's ``sitecustomize``."""
    return str(Path(__file__).resolve().parent / "bootstrap")


def guarded_env(
    *,
    target_mb: float | None = None,
    name: str | None = None,
    state_dir: Path | None = None,
    namespace: str | None = None,
    sample_hz: float | None = None,
    base: dict[str, str] | None = None,
    explain: bool = False,
    explain_after: float | None = None,
    keep: tuple[str, ...] = (),
    discover: bool | None = None,
    malloc_arena_max: int | None = None,
) -> dict[str, str]:
    """The environment that makes a Python child guard itself at start.

    ``explain`` makes it print what would be reclaimable instead (no guard);
    ``keep`` names caches never to clear (``HIVEMIND_KEEP``); ``discover``
    switches cache discovery (``HIVEMIND_DISCOVER``); ``malloc_arena_max``
    sets glibc's ``MALLOC_ARENA_MAX`` for the child.
    """
    env = dict(os.environ if base is None else base)
    current = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = bootstrap_dir() + (os.pathsep + current if current else "")
    env["HIVEMIND_ATTACH"] = "1"
    for var, value in (
        ("HIVEMIND_TARGET_MB", target_mb),
        ("HIVEMIND_TARGET_NAME", name),
        ("HIVEMIND_STATE_DIR", state_dir),
        ("HIVEMIND_NAMESPACE", namespace),
        ("HIVEMIND_SAMPLE_HZ", sample_hz),
        ("HIVEMIND_EXPLAIN_AFTER", explain_after),
        ("HIVEMIND_KEEP", ",".join(keep) if keep else None),
        ("HIVEMIND_DISCOVER", None if discover is None else int(discover)),
        ("MALLOC_ARENA_MAX", malloc_arena_max),
    ):
        if value is not None:
            env[var] = str(value)
    if explain:
        env["HIVEMIND_EXPLAIN"] = "1"
    return env


def run_guarded(cmd: list[str], **settings: object) -> int:
    """Run ``cmd`` guarded; return its exit code (128+N if killed by signal N)."""
    if not cmd:
        raise UsageError("no command given; usage: hivemind run [OPTIONS] -- python app.py")
    name = settings.get("name")
    if name is not None:
        from hivemind.swarm.target.runtime import valid_target_name

        if not isinstance(name, str) or not valid_target_name(name):
            raise UsageError(f"invalid --name {name!r}: use 1-128 letters, digits and _ . : @ / -")
    env = guarded_env(**settings)  # type: ignore[arg-type]
    try:
        child = subprocess.Popen(cmd, env=env)
    except FileNotFoundError:
        raise HivemindError(f"command not found: {cmd[0]}") from None
    except PermissionError:
        raise HivemindError(f"command not executable: {cmd[0]}") from None

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 128 - code if code < 0 else code
