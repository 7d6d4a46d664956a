"""How the swarm's own Ray head starts: loopback only, token-authenticated, lean.

:class:`RayHead` runs ``ray start --head`` (Ray's supported CLI) with only
what a swarm of four actors needs, then the supervisor attaches to it with
``ray.init(address=...)``:

- every Ray socket on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
  stops Ray from replacing ``--node-ip-address=127.0.0.1`` with the
  machine's routable address; Ray then binds GCS, raylet, object manager,
  workers and agents to that address);
- Ray's token authentication on (``RAY_AUTH_MODE=token``) with the token in
  ``<state>/ray-token`` (mode 0600) when the installed Ray has it;
- no dashboard, no autoscaler monitor, no log monitor, no usage stats, no
  prestarted or idle workers, the smallest object store Ray accepts;
- Ray's temp/session folder private to this swarm (:func:`ray_temp_dir`).

What is left (GCS, raylet, the raylet's two agents, the API server) and what
each costs is in ``docs/ray.md``. :meth:`RayHead.pids` names the head
processes so a supervisor can watch them; :meth:`RayHead.stop` ends them by
pid, and :func:`stop_orphans` ends those a killed supervisor left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from hivemind.swarm.errors import StateFolderError, SwarmStartError
from hivemind.swarm.paths import ensure_private_dir, write_private_file

__all__ = [
    "HEAD_ROLES",
    "MAX_TEMP_DIR",
    "TOKEN_FILE",
    "RayHead",
    "find_head_pids",
    "ray_env",
    "ray_temp_dir",
    "stop_orphans",
    "token_auth_supported",
]

TOKEN_FILE = "ray-token"
# Ray puts unix sockets at <temp>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store:
# 8 + 26 + up to 7 pid digits, plus 21 for the socket part and 2 slashes, ~64 bytes
# after the temp folder; sun_path holds 107. So the temp folder gets at most 40.
MAX_TEMP_DIR = 40
HEAD_ROLES = ("gcs_server", "raylet", "api_server", "dashboard_agent", "runtime_env_agent")
_PR_SET_CHILD_SUBREAPER = 36


def ray_temp_dir(state_dir: Path) -> Path:
    """Ray's temp/session folder for the swarm of ``state_dir`` (created, mode 0700).

    ``<state>/ray`` when that path is at most :data:`MAX_TEMP_DIR` bytes, else
    ``$TMPDIR/hm-<uid>/<12 hex of the state folder's hash>`` (also private),
    so Ray's unix sockets fit in ``sun_path``.
    """
    preferred = state_dir / "ray"
    if len(os.fsencode(preferred)) <= MAX_TEMP_DIR:
        return _private_again(preferred)
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"hm-{os.getuid()}"
    short = base / digest
    if len(os.fsencode(short)) > MAX_TEMP_DIR:
        base = Path("/tmp") / f"hm-{os.getuid()}"
        short = base / digest
    ensure_private_dir(base)
    return _private_again(short)


def _private_again(path: Path) -> Path:
    """Create ``path`` 0700, or make it 0700 again: ``ray start`` chmods its temp folder 0777.

    Only inside a folder we already made private (the state folder or
    ``hm-<uid>``), so nobody else could have reached it meanwhile.
    """
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_uid == os.getuid():
            path.chmod(0o700)
    return ensure_private_dir(path)


def token_auth_supported() -> bool:
    """True when the installed Ray has token authentication (``RAY_AUTH_MODE=token``).

    Looks for Ray's module file without importing Ray (Ray must be imported
    only after :func:`ray_env` is in the environment).
    """
    spec = importlib.util.find_spec("ray")
    if spec is None or spec.origin is None:
        return False
    setup = Path(spec.origin).parent / "_private" / "authentication"
    return (setup / "authentication_token_setup.py").exists()


def _token_path(state_dir: Path) -> Path:
    """``<state>/ray-token``: made (0600) if missing; refused if others can read it."""
    path = state_dir / TOKEN_FILE
    if not path.exists():
        write_private_file(path, secrets.token_hex(32))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StateFolderError(
            f"Ray token {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return path


def ray_env(state_dir: Path, *, auth: bool | None = None) -> dict[str, str]:
    """The environment for ``ray start`` and for the driver that attaches to it.

    Loopback node address, the token (when ``auth``; default: when Ray has
    it), and the raylet settings that keep no worker idle.
    """
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP stays 127.0.0.1
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_enable_worker_prestart": "0",
        "RAY_prestart_worker_first_driver": "0",
        "RAY_num_workers_soft_limit": "0",
    }
    if auth if auth is not None else token_auth_supported():
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(_token_path(state_dir))
    return env


def _become_subreaper() -> None:
    """Adopt orphaned descendants (Ray's daemons outlive ``ray start``) so we can reap them."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _role(proc: psutil.Process, cmdline: list[str]) -> str | None:
    first = cmdline[0] if cmdline else ""
    joined = " ".join(cmdline)
    if first.endswith("gcs_server"):
        return "gcs_server"
    if first.endswith("/raylet"):
        return "raylet"
    if "dashboard/dashboard.py" in joined:
        return "api_server"
    if first.startswith("ray::DashboardAgent") or "dashboard/agent.py" in joined:
        return "dashboard_agent"
    if first.startswith("ray::RuntimeEnvAgent") or "runtime_env/agent/main.py" in joined:
        return "runtime_env_agent"
    return None


def find_head_pids(temp_dir: Path) -> dict[str, int]:
    """The Ray head processes whose session lives in ``temp_dir``, by role.

    GCS, raylet and API server name the session folder on their command
    line; the raylet's two agents are found as its children.
    """
    marker = f"{temp_dir}/session_"
    found: dict[str, int] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if not any(marker in arg for arg in cmdline):
                continue
            role = _role(proc, cmdline)
            if role in ("gcs_server", "raylet", "api_server"):
                found[role] = proc.pid
    if "raylet" in found:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(found["raylet"]).children():
                with contextlib.suppress(psutil.Error):
                    role = _role(child, child.cmdline())
                    if role in ("dashboard_agent", "runtime_env_agent"):
                        found[role] = child.pid
    return found


def _terminate(pids: list[int], timeout_s: float) -> None:
    """SIGTERM ``pids``, wait up to ``timeout_s``, then SIGKILL what is left."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5.0)


def _stop_head(pids: dict[str, int], timeout_s: float) -> list[int]:
    """Raylet first (it reports its end to the GCS; its workers and agents go with it),
    then GCS and API server. A GCS or raylet that hangs in its graceful shutdown
    (each waits for the other) is killed after ``timeout_s``."""
    raylet = pids.get("raylet")
    first = ([raylet] if raylet else []) + _raylet_children(raylet)
    rest = [pid for role, pid in pids.items() if role != "raylet" and pid not in first]
    _terminate(first, timeout_s)
    _terminate(rest, timeout_s)
    return first + rest


def _raylet_children(raylet_pid: int | None) -> list[int]:
    if raylet_pid is None:
        return []
    try:
        return [c.pid for c in psutil.Process(raylet_pid).children(recursive=True)]
    except psutil.Error:
        return []


def stop_orphans(state_dir: Path, timeout_s: float = 3.0) -> list[int]:
    """End a Ray head left by a killed supervisor of ``state_dir``; return the pids ended."""
    temp = state_dir / "ray"
    candidates = [temp] if len(os.fsencode(temp)) <= MAX_TEMP_DIR else []
    if not candidates:
        with contextlib.suppress(StateFolderError):
            candidates.append(ray_temp_dir(state_dir))
    ended: list[int] = []
    for folder in candidates:
        pids = find_head_pids(folder)
        if pids:
            ended += _stop_head(pids, timeout_s)
    return ended


@dataclass
class RayHead:
    """One swarm's local Ray head. ``start()`` returns the address to attach to."""

    state_dir: Path
    object_store_mb: int = 80
    num_cpus: int = 1
    api_server: bool = False
    temp_dir: Path = field(init=False)
    env: dict[str, str] = field(init=False, default_factory=dict)
    address: str = ""
    _pids: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.temp_dir = ray_temp_dir(self.state_dir)

    def child_env(self) -> dict[str, str]:
        """The environment of ``ray start`` and so of every Ray process on this head.

        No ``HIVEMIND_*`` variable: the HMAC key or a Redis URL with its password
        would sit in the memory of the GCS, the raylet and every worker. Agents
        read them from the state folder instead.
        """
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HIVEMIND_") or k == "HIVEMIND_NODE"
        }
        return {**base, **self.env}

    def command(self) -> list[str]:
        """The ``ray start`` command line (Ray's CLI, run by this interpreter)."""
        return [
            sys.executable,
            "-c",
            "from ray.scripts.scripts import main; main()",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            "--port=0",
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            "--include-dashboard=false",
            "--dashboard-host=127.0.0.1",
            "--no-monitor",
            "--include-log-monitor=false",
            "--disable-usage-stats",
        ]

    def start(self, timeout_s: float = 120.0) -> str:
        """Start the head; return its GCS address (``127.0.0.1:PORT``).

        Also sets the loopback/token variables in this process's environment,
        so ``ray.init(address=...)`` here authenticates; call it before this
        process imports ``ray`` (Ray reads the loopback switch at import). Raises
        :class:`SwarmStartError` with Ray's last line when it fails.
        """
        # We hold the state folder's lock: a head still running in our temp folder was
        # left by a supervisor that was killed.
        _stop_head(find_head_pids(self.temp_dir), 3.0)
        self.env = ray_env(self.state_dir)
        os.environ.update(self.env)
        constants = sys.modules.get("ray._private.ray_constants")
        if constants is not None:
            # Ray was imported before the switch was set: apply it as the import would have.
            setattr(constants, "ENABLE_RAY_CLUSTER", False)  # noqa: B010
        address_file = self.temp_dir / "ray_current_cluster"
        with contextlib.suppress(FileNotFoundError):
            address_file.unlink()
        _become_subreaper()
        try:
            done = subprocess.run(
                self.command(),
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            self.stop()
            raise SwarmStartError(f"ray start did not finish in {timeout_s:.0f}s") from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            self.stop()
            raise SwarmStartError(f"ray start failed: {lines[-1] if lines else done.returncode}")
        try:
            self.address = address_file.read_text(encoding="utf-8").strip()
        except OSError:
            self.stop()
            raise SwarmStartError(f"ray start wrote no address in {self.temp_dir}") from None
        self._pids = self._wait_pids(deadline=time.monotonic() + 10.0)
        _private_again(self.temp_dir)
        if not self.api_server and "api_server" in self._pids:
            # Ray starts its API server (dashboard head) even with the dashboard off and
            # has no flag against it; the swarm never uses it (it serves `ray list`, the
            # state API and job submission), so it goes: ~55 MB PSS.
            _terminate([self._pids.pop("api_server")], timeout_s=5.0)
        return self.address

    def _wait_pids(self, deadline: float) -> dict[str, int]:
        pids = find_head_pids(self.temp_dir)
        while set(pids) != set(HEAD_ROLES) and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = find_head_pids(self.temp_dir)
        return pids

    def seal(self) -> None:
        """Make the temp folder 0700 again (Ray's driver and workers chmod it 0777)."""
        _private_again(self.temp_dir)

    def pids(self) -> dict[str, int]:
        """The head processes this object started, by role (those still running)."""
        return {role: pid for role, pid in self._pids.items() if psutil.pid_exists(pid)}

    def stop(self, timeout_s: float = 3.0) -> None:
        """End the head (and any worker left under its raylet), by pid; idempotent."""
        _stop_head(find_head_pids(self.temp_dir) | self._pids, timeout_s)
        self._pids = {}
        _private_again(self.temp_dir)
