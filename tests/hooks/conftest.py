"""Fixtures for the hooks tests: a private state folder, a leased embedded Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis, pid_alive

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))


@dataclass
class HookEnv:
    """One test's world: state folder, namespace, env for subprocesses."""

    root: Path
    state_dir: Path
    namespace: str
    env: dict[str, str]

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 20,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hivemind hooks ARGS`` as a real process in the project root."""
        return subprocess.run(
            [HIVEMIND, "hooks", *args],
            input=stdin.decode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [HIVEMIND, "hooks", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=self.env,
        )


def kill_server(state_dir: Path) -> None:
    """Stop any redis-server left for this state folder, by its pid."""
    server = EmbeddedRedis(state_dir)
    with contextlib.suppress(OSError, ValueError):
        pid = int(server.pid_file.read_text().strip())
        if pid_alive(pid) and b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def hook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HookEnv]:
    """A git-less project folder with its own state folder and a random namespace."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / ".git").mkdir()  # project root detection stops here
    state = root / ".hivemind"
    ns = f"t{uuid.uuid4().hex[:10]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "HIVEMIND_REDIS_URL",
            "HIVEMIND_SESSION_ID",
            "CLAUDE_PROJECT_DIR",
            "HIVEMIND_STREAM_MAXLEN",
        )
    }
    env.update(HIVEMIND_STATE_DIR=str(state), HIVEMIND_NAMESPACE=ns)
    for key in ("HIVEMIND_REDIS_URL", "HIVEMIND_SESSION_ID", "CLAUDE_PROJECT_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HIVEMIND_STATE_DIR", str(state))
    monkeypatch.setenv("HIVEMIND_NAMESPACE", ns)
    monkeypatch.chdir(root)
    yield HookEnv(root, state, ns, env)
    kill_server(state)


@pytest.fixture
def server(hook_env: HookEnv) -> Iterator[redis.Redis]:
    """The embedded server held up for the whole test (hooks adopt it, never stop it)."""
    with EmbeddedRedis(hook_env.state_dir).lease() as url:
        client = connect(url)
        try:
            yield client
        finally:
            client.close()
