"""The keeper: the small parent of a detached supervisor that starts it again when it dies.

``swarm up --detach`` runs ``python -m hivemind.swarm.lifecycle.keeper``.
The keeper takes the state folder's lock (so the swarm counts as running
while its supervisor is being restarted), becomes the *child subreaper* of
everything under it (so no process the swarm started is left a zombie:
orphans are re-parented to the keeper, which reaps them), and runs the
supervisor as its child. When the supervisor dies (SIGKILL, a crash, or
exit code 75 after its Ray head died), the keeper ends what is left of
that supervisor's Ray processes by pid and starts a new supervisor on the
same session; the embedded ``redis-server`` keeps running and is adopted.
If that happens a fourth time within 60 s the keeper stops the swarm
cleanly and writes one line that says why (no crash loop). SIGTERM (from
``swarm down``) is passed to the supervisor, whose orderly stop the keeper
waits for, at most :data:`STOP_GRACE_S`: then it SIGKILLs the supervisor
and ends what it started by pid, so a stop never hangs on a wedged Ray.

This module imports only the standard library, psutil and hivemind's
light state modules: the keeper must be small and must not fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType

from hivemind.swarm.env import env_str
from hivemind.swarm.health import read_health, write_health
from hivemind.swarm.state import SupervisorLock, read_info, remove_info, write_info

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW_S", "STOP_GRACE_S", "Keeper", "main"]

MAX_RESTARTS = 3  # restarts allowed within RESTART_WINDOW_S; the next failure stops the swarm
RESTART_WINDOW_S = 60.0
RESTART_EXIT = 75  # the supervisor's "start me again" (supervisor.RESTART_EXIT)
STOP_GRACE_S = 40  # after SIGTERM, the supervisor's orderly stop gets this long (whole s)
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the kernel does not offer it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _say(line: str) -> None:
    print(f"hivemind: {line}", file=sys.stderr, flush=True)


def _describe(status: int) -> tuple[str, int]:
    """``(how it ended, exit code)`` from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}", 128 + sig
    code = os.waitstatus_to_exitcode(status)
    return f"exited with code {code}", code


class Keeper:
    """Runs and restarts one supervisor for ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.lock = SupervisorLock(state_dir)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.failures: deque[float] = deque()
        self.restarts = 0
        self.session = env_str("session_id") or ""

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            signal.alarm(STOP_GRACE_S)  # _on_alarm: the supervisor did not stop in time
        self.stopping = True
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signal.SIGTERM)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.child is not None and self.child.returncode is None:
            _say(f"the supervisor did not stop within {STOP_GRACE_S}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signal.SIGKILL)

    def _spawn(self, env: dict[str, str]) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "hivemind.swarm.lifecycle.supervisor"],
            stdin=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )

    def run(self) -> int:
        """Keep a supervisor running until it stops in order; return the exit code."""
        self.lock.acquire()
        _become_subreaper()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)
        env = {**os.environ, "HIVEMIND_KEEPER_PID": str(os.getpid())}
        env.pop("HIVEMIND_RESTART_REASON", None)
        try:
            self._spawn(env)
            while True:
                assert self.child is not None
                pid, status = os.waitpid(-1, 0)  # reaps every orphan handed to us, too
                if pid != self.child.pid:
                    continue
                how, code = _describe(status)
                self.child.returncode = code
                if self.stopping or code == 0:
                    signal.alarm(0)
                    self._cleanup(kill_redis=self.stopping and code != 0)
                    return 0 if self.stopping else code
                info = read_info(self.state_dir)
                if info is not None and info.session_id:
                    self.session = info.session_id
                if self.restarts == 0 and (info is None or info.pid != pid):
                    # It never came up (a start error it already explained): do not retry.
                    return code if code else 1
                reason, part = self._reason(how, code)
                now = time.monotonic()
                while self.failures and now - self.failures[0] > RESTART_WINDOW_S:
                    self.failures.popleft()
                if len(self.failures) >= MAX_RESTARTS:
                    line = (
                        f"swarm stopped: it failed {MAX_RESTARTS + 1} times within "
                        f"{RESTART_WINDOW_S:.0f}s, last: {reason}"
                    )
                    self._give_up(line)
                    return 1
                self.failures.append(now)
                self._mark_down(part, reason)
                self._cleanup(kill_redis=False, keep_info=True)
                _say(f"{reason}; starting it again (session {self.session})")
                if info is not None:
                    info.state = "restarting"
                    with contextlib.suppress(OSError):
                        write_info(self.state_dir, info)
                self.restarts += 1
                self._spawn(
                    {**env, "HIVEMIND_SESSION_ID": self.session, "HIVEMIND_RESTART_REASON": reason}
                )
        finally:
            self._reap_all()
            self.lock.release()

    def _reason(self, how: str, code: int) -> tuple[str, str]:
        """Why the supervisor is started again, and which part that restarts.

        A Ray head its watcher saw go is the reason whatever way the
        supervisor then ended (exit 75, or killed by Ray's own GCS client
        60 s later while a Ray call of its main thread waited on the dead GCS).
        """
        health = read_health(self.state_dir)
        head = health.components.get("ray_head") if health else None
        if head is not None and head.state != "up" and head.reason:
            return head.reason, "ray_head"
        if code == RESTART_EXIT:
            return "Ray head lost", "ray_head"
        return f"supervisor {how}", "supervisor"

    def _mark_down(self, part: str, reason: str) -> None:
        """Record, for ``swarm status``, what is down until the new supervisor is up."""
        health = read_health(self.state_dir)
        if health is not None:
            health.mark_down(part, reason)
            write_health(self.state_dir, health)

    def _give_up(self, line: str) -> None:
        _say(line)
        self._cleanup(kill_redis=True)
        health = read_health(self.state_dir)
        if health is not None:
            health.stopped_reason = line
            write_health(self.state_dir, health)

    def _cleanup(self, *, kill_redis: bool, keep_info: bool = False) -> None:
        """End what the dead supervisor left: its Ray processes, and Redis if asked."""
        import psutil

        info = read_info(self.state_dir)
        if info is not None:
            pids = list(info.ray_pids)
            for pid in list(pids):
                with contextlib.suppress(psutil.Error):
                    pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
            for pid in dict.fromkeys(pids):
                if pid in (os.getpid(), info.redis_pid):
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if kill_redis:
            from hivemind.swarm.lifecycle.ray_head import stop_orphans
            from hivemind.swarm.redis.server import EmbeddedRedis

            stop_orphans(self.state_dir)  # a head swarm.json no longer names
            if info is None or info.embedded:
                EmbeddedRedis(self.state_dir).stop()
        if not keep_info and info is not None and info.state != "stopping":
            remove_info(self.state_dir)
        self._reap_all()

    @staticmethod
    def _reap_all() -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass


def main() -> int:
    """Entry point: ``python -m hivemind.swarm.lifecycle.keeper`` (``swarm up --detach``)."""
    from hivemind.swarm.errors import HivemindError
    from hivemind.swarm.paths import default_state_dir

    state_dir = default_state_dir()
    try:
        return Keeper(state_dir).run()
    except HivemindError as exc:
        _say(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
