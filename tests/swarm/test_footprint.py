"""The guard's footprint in the app: what a guarded process loads, checked in fresh interpreters.

Issue 11 wants the guard under 5 MB RSS in the app. Most of what it once
cost was standard-library modules it pulled in (``dataclasses`` alone
~1.4 MB with ``inspect``; ``logging`` ~1 MB; ``typing``; ``socket`` and
``hiredis`` even with no swarm; ``hashlib`` through ``secrets`` when it made
the key). These tests make sure none of them creeps back: each child
really attaches (its guard thread samples, commands run) and then lists
what is loaded. RSS itself is measured by ``benchmarks/bench_loop.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hivemind.swarm.messages import Action, ActionKind, Command
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from hivemind.swarm.signing import sign
from hivemind.swarm.state import SwarmInfo, write_info

ROOT = Path(__file__).resolve().parent.parent.parent

# Never in a guarded process, swarm or not, commands or not.
HEAVY = (
    "dataclasses", "inspect", "ast", "dis", "tokenize", "typing", "logging", "random", "zlib",
    "hashlib", "_hashlib", "hmac", "secrets", "subprocess", "pydantic", "redis", "ray",
)  # fmt: skip
# Only once a swarm was found and joined.
NETWORK = ("socket", "select", "hiredis")

CHILD = r"""
import json, sys, time
import hivemind
from hivemind.swarm.target.attach import current_runtime
state_dir, command, want_connected = sys.argv[1:4]
rt = hivemind.attach(target_mb=1e5, name="light", state_dir=state_dir)
deadline = time.monotonic() + 20
while rt is not None and time.monotonic() < deadline and (
        rt.stats["samples"] < 5 or rt.connected != (want_connected == "1")):
    time.sleep(0.05)
applied = 0
if rt is not None and command:
    rt._on_command(command.encode())
    applied = rt.stats["commands"]
print(json.dumps({
    "attached": rt is not None and rt is current_runtime() and rt._thread.is_alive(),
    "samples": rt.stats["samples"] if rt else 0,
    "connected": bool(rt and rt.connected),
    "applied": applied,
    "modules": sorted(sys.modules),
}))
"""


def _child(
    state_dir: Path, cwd: Path, *, command: str = "", connected: bool = False
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(state_dir), command, "1" if connected else "0"],
        env=env, capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got: dict[str, Any] = json.loads(out.stdout)
    return got


def _command(key: bytes) -> str:
    actions = (
        Action(kind=ActionKind.COLLECT, generation=0),
        Action(kind=ActionKind.MALLOC_TRIM),
        Action(kind=ActionKind.GC_PROFILE, profile="balanced"),  # type: ignore[arg-type]
    )
    return sign(Command(decision_id="d", target="light", actions=actions), key).model_dump_json()


def test_attach_with_no_swarm_loads_nothing_heavy_even_making_the_key(tmp_path: Path) -> None:
    """A fresh project: no swarm, no key yet (attach makes it); then a signed command runs."""
    state = tmp_path / ".hivemind"
    got = _child(state, tmp_path)
    assert got["attached"] and got["samples"] >= 5 and not got["connected"], got
    assert (state / "secret").is_file()  # the key was made here, without secrets/hashlib
    loaded = set(got["modules"])
    assert "hivemind.swarm.target.controller" in loaded  # the guard really is in this process
    assert sorted(loaded & {*HEAVY, *NETWORK}) == []
    # Same folder, now with its key: a command is verified and applied, still light.
    got = _child(state, tmp_path, command=_command(read_secret(state)))
    assert got["attached"] and got["applied"] == 1, got
    assert "hivemind.swarm.target.actions" in got["modules"]
    assert sorted(set(got["modules"]) & {*HEAVY, *NETWORK}) == []


def test_a_guard_that_joined_a_swarm_loads_the_network_modules_and_nothing_heavier(
    embedded: EmbeddedRedis, namespace: str, tmp_path: Path
) -> None:
    """Found through swarm.json, connected, then a command: socket and hiredis, no more."""
    state = embedded.state_dir
    write_info(
        state,
        SwarmInfo(
            pid=os.getpid(), namespace=namespace, redis_url=embedded.url, embedded=True,
            state="ready", started_at=time.time(),
        ),
    )  # fmt: skip
    got = _child(state, tmp_path, command=_command(read_secret(state)), connected=True)
    assert got["attached"] and got["connected"] and got["applied"] == 1, got
    loaded = set(got["modules"])
    assert {"socket", "hiredis", "hivemind.swarm.redis.resp"} <= loaded
    assert sorted(loaded & set(HEAVY)) == []


LAZYLOG = r"""
import sys
from hivemind.swarm.lazylog import get_logger
log = get_logger("hivemind.test")
log.debug("dropped %s", 1)
log.info("dropped %s", 2)
quiet = "logging" in sys.modules
log.warning("said %s", "once")
print(quiet, "logging" in sys.modules)
"""


def test_the_lazy_logger_imports_logging_only_to_say_something(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", LAZYLOG], env=env, capture_output=True, text=True, timeout=30,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert out.stderr.strip() == "said once"  # logging's last-resort handler: warnings show
