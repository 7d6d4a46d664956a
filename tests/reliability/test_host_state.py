"""Issue 14, items 2, 4, 5 and 6: each attack on the state folder, performed, and refused.

2. A ``.hivemind/`` shipped in a cloned repository (an AOF that loads a native
   module, a planted ``hooks:current``, a ``hooks.log`` symlink to a dotfile).
4. Six processes creating the secret at once; a short ``HIVEMIND_SECRET``.
5. Another user's ``.git`` + ``.hivemind`` in a shared world-writable folder
   above ours; another user's (or a symlinked) ``hivemind-<uid>`` temp folder.
6. Stale pids: a pid file naming another Redis or a reused pid; a stale
   ``swarm.json`` read while a new supervisor is starting.

These run as root on the development machine, so "another user" is made
with ``chown`` to ``nobody``.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind.swarm.errors import ConfigError, HivemindError, StateFolderError
from hivemind.swarm.lifecycle.detach import stop_swarm
from hivemind.swarm.paths import (
    MARKER_FILE,
    default_state_dir,
    ensure_state_dir,
    open_private,
    project_root,
    short_socket_dir,
    verify_state_dir,
)
from hivemind.swarm.procs import pid_alive, start_ticks
from hivemind.swarm.record import asdict
from hivemind.swarm.redis.server import EmbeddedRedis
from hivemind.swarm.secret import read_secret
from hivemind.swarm.state import SupervisorLock, SwarmInfo, write_info
from hivemind.swarm.target.runtime import Runtime, RuntimeConfig
from tests.reliability.attacks import record

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
NOBODY = 65534
PWNED_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void pwn(void) {
    FILE *f = fopen(PWNED_PATH, "w"); if (f) { fputs("pwned\n", f); fclose(f); }
}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "CLAUDE_"))}
    return {**env, **extra}


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HIVEMIND, *args],
        cwd=cwd,
        env=env or _env(),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _evil_module(tmp: Path) -> tuple[Path, Path]:
    """A shared library whose constructor writes a file: (library, file it writes)."""
    pwned = tmp / "PWNED"
    lib = tmp / "evil.so"
    if shutil.which("gcc"):
        src = tmp / "evil.c"
        src.write_text(PWNED_C.replace("PWNED_PATH", json.dumps(str(pwned))))
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=60
        )
    return lib, pwned


def _aof_module_load(lib: Path) -> bytes:
    parts = [b"MODULE", b"LOAD", str(lib).encode()]
    out = b"*%d\r\n" % len(parts)
    for p in parts:
        out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.email=a@example.invalid", "-c", "user.name=attacker", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def cloned(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A repository whose committed ``.hivemind/`` is hostile, cloned the normal way.

    Yields (clone, file the planted module would create, dotfile the log symlink targets).
    """
    lib, pwned = _evil_module(tmp_path)
    dotfile = tmp_path / "bashrc"
    dotfile.write_text("# the victim's dotfile\n")
    origin = tmp_path / "origin"
    planted = origin / ".hivemind"
    (planted / "redis").mkdir(parents=True)
    (planted / "redis" / "appendonly.aof").write_bytes(
        _aof_module_load(lib)
        + b"*3\r\n$3\r\nSET\r\n$21\r\nhm:default:hooks:current\r\n$8\r\nattacker\r\n"
    )
    (planted / "secret").write_text("a" * 64 + "\n")
    (planted / MARKER_FILE).write_text("hivemind state folder v1: forged\n")
    (planted / "hooks.log").symlink_to(dotfile)
    _git("init", "-q", cwd=origin)
    _git("add", "-A", "-f", cwd=origin)
    _git("commit", "-q", "-m", "innocent", cwd=origin)
    clone = tmp_path / "clone"
    _git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    assert (clone / ".hivemind" / "redis" / "appendonly.aof").exists()
    yield clone, pwned, dotfile
    EmbeddedRedis(clone / ".hivemind").stop()


def test_a_hivemind_folder_from_a_cloned_repository_is_refused(
    cloned: tuple[Path, Path, Path],
) -> None:
    clone, pwned, dotfile = cloned
    before = dotfile.read_text()
    commands = [("memory", "list"), ("swarm", "down")]
    refused = 0
    for argv in commands:
        r = _cli(*argv, cwd=clone)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if r.returncode == 1 and "not made by hivemind" in r.stderr and len(lines) == 1:
            refused += 1
        assert "Traceback" not in r.stderr, r.stderr
    hook = _cli("hooks", "pre-task", "--description", "x", "--format", "json", cwd=clone)
    assert hook.returncode == 0 and "Traceback" not in hook.stderr
    hook_refused = "not made by hivemind" in hook.stderr and '"recorded": true' not in hook.stdout
    refused += hook_refused
    record(
        "2 planted state folder",
        "cloned .hivemind/ (AOF with MODULE LOAD, hooks:current, hooks.log symlink): "
        "memory list, swarm down, a hook",
        tried=len(commands) + 1,
        refused=refused,
    )
    assert refused == len(commands) + 1, (refused, hook.stderr)
    assert not pwned.exists(), "the planted module's constructor ran"
    assert dotfile.read_text() == before, "a hook wrote through the planted log symlink"
    assert not (clone / ".hivemind" / "redis" / "redis.pid").exists(), "a server was started"


def test_a_guarded_process_in_a_planted_folder_joins_nothing_and_keeps_running(
    cloned: tuple[Path, Path, Path],
) -> None:
    clone, _, _ = cloned
    planted = clone / ".hivemind"
    (planted / "swarm.json").write_text(json.dumps(asdict(SwarmInfo(
        pid=os.getpid(), namespace="evil", redis_url="redis://127.0.0.1:1/0", embedded=False,
        state="ready", pid_start=start_ticks(os.getpid()),
    ))))  # fmt: skip
    rt = Runtime(RuntimeConfig(name="victim", target_mb=100_000, redis_url=None, namespace=None,
                               state_dir=planted, key=None, local_gc=False)).start()  # fmt: skip
    try:
        time.sleep(1.0)
        joined = rt.connected
        errors = rt.stats["internal_errors"]
    finally:
        rt.stop()
    what = "guarded process whose state folder is planted (swarm.json naming another Redis)"
    record("2 planted state folder", what, tried=1, refused=int(not joined))
    assert not joined and errors == 0


def test_module_load_in_our_own_aof_cannot_run(tmp_path: Path) -> None:
    """Even in a folder we trust, the server refuses MODULE (renamed away) in its AOF."""
    lib, pwned = _evil_module(tmp_path)
    state = ensure_state_dir(tmp_path / ".hivemind")
    server = EmbeddedRedis(state)
    server.data_dir.mkdir(mode=0o700)
    (server.data_dir / "appendonly.aof").write_bytes(_aof_module_load(lib))
    with pytest.raises(HivemindError, match=r"(?i)unknown command"):
        server.start()
    record(
        "2 planted state folder",
        "AOF replaying MODULE LOAD of a native library (MODULE renamed away)",
        tried=1,
        refused=int(not pwned.exists()),
    )
    assert not pwned.exists()


@pytest.mark.parametrize(
    "tamper",
    ["chown nobody", "chmod 755", "symlink", "no marker", "marker not ours", "marker 644"],
)
def test_a_state_folder_we_did_not_make_is_refused(tmp_path: Path, tamper: str) -> None:
    real = ensure_state_dir(tmp_path / "real")
    (real / "secret").write_text("b" * 64)
    state = real
    if tamper == "chown nobody":
        os.chown(real, NOBODY, NOBODY)
    elif tamper == "chmod 755":
        real.chmod(0o755)
    elif tamper == "symlink":
        state = tmp_path / "link"
        state.symlink_to(real)
    elif tamper == "no marker":
        (real / MARKER_FILE).unlink()
    elif tamper == "marker not ours":
        os.chown(real / MARKER_FILE, NOBODY, NOBODY)
    elif tamper == "marker 644":
        (real / MARKER_FILE).chmod(0o644)
    outcomes = []
    for attempt in (verify_state_dir, ensure_state_dir, read_secret):
        try:
            attempt(state)
        except StateFolderError:
            outcomes.append(True)
        else:
            outcomes.append(False)
    record("2 planted state folder", f"state folder: {tamper}", tried=3, refused=sum(outcomes))
    assert outcomes == [True, True, True]


def test_state_folder_is_marked_and_ignored_by_git(tmp_path: Path) -> None:
    _git("init", "-q", cwd=tmp_path)
    state = ensure_state_dir(tmp_path / ".hivemind")
    read_secret(state)
    info = os.lstat(state)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"
    _git("add", "-A", cwd=tmp_path)
    staged = subprocess.run(
        ["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    record(
        "2 planted state folder",
        "`git add -A` in a project with a state folder (secret, marker)",
        tried=1,
        refused=int(".hivemind" not in staged),
    )
    assert ".hivemind" not in staged, staged


def test_a_symlinked_log_or_lock_is_not_followed(tmp_path: Path) -> None:
    state = ensure_state_dir(tmp_path / ".hivemind")
    target = tmp_path / "bashrc"
    target.write_text("keep\n")
    names = ["hooks.log", "swarm.lock", "swarm.log"]
    refused = 0
    for name in names:
        (state / name).symlink_to(target)
        try:
            os.close(open_private(state / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        except StateFolderError:
            refused += 1
    record("2 planted state folder", "log/lock symlinks to a dotfile", tried=3, refused=refused)
    assert refused == 3 and target.read_text() == "keep\n"


def _read_key(state: str, barrier: multiprocessing.synchronize.Barrier, out: object) -> None:
    import random
    import secrets
    import time

    real = secrets.token_hex

    def slow_token_hex(n: int) -> str:
        # Widen the window between "no key yet" and "key written" (a slow disk, a
        # loaded box): every process is inside it at once, so a racy create shows.
        time.sleep(0.2 + random.random() * 0.1)
        return real(n)

    secrets.token_hex = slow_token_hex  # this child process only
    barrier.wait()
    out.put(read_secret(Path(state)).decode())  # type: ignore[attr-defined]


def test_six_processes_creating_the_secret_agree_on_one_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    rounds, procs_per_round, disagreements = 5, 6, 0
    for i in range(rounds):
        state = ensure_state_dir(tmp_path / f"s{i}")
        barrier = ctx.Barrier(procs_per_round)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_read_key, args=(str(state), barrier, out))
            for _ in range(procs_per_round)
        ]
        for p in procs:
            p.start()
        keys = {out.get(timeout=30) for _ in procs}
        for p in procs:
            p.join(30)
        disagreements += len(keys) != 1
        assert all(len(k) >= 32 for k in keys)
        assert keys == {(state / "secret").read_text().strip()}
    record(
        "4 secret race",
        f"{procs_per_round} processes create the secret on a fresh folder at once",
        tried=rounds,
        refused=rounds - disagreements,
    )
    assert disagreements == 0


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        read_secret(tmp_path / ".hivemind", "x")
    r = _cli(
        "swarm", "up", "--detach", "--state-dir", str(tmp_path / "s"),
        cwd=tmp_path, env=_env(HIVEMIND_SECRET="x"),
    )  # fmt: skip
    record("4 secret race", "HIVEMIND_SECRET=x", tried=1, refused=int(r.returncode == 2))
    assert r.returncode == 2, r
    assert "at least 32 bytes" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process the attacker would like us to signal (stands in for anyone's)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_another_users_git_and_state_folder_above_us_are_not_trusted(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    # The attacker (uid nobody) plants a repository root and a plausible state folder.
    (shared / ".git").mkdir()
    planted = shared / ".hivemind"
    planted.mkdir(mode=0o700)
    (planted / MARKER_FILE).write_text("hivemind state folder v1: forged\n")
    info = SwarmInfo(pid=sleeper.pid, namespace="default", redis_url="redis://evil:1/0",
                     embedded=False, state="ready", pid_start=start_ticks(sleeper.pid))  # fmt: skip
    (planted / "swarm.json").write_text(json.dumps(asdict(info)))
    (planted / "swarm.lock").write_text("")
    (planted / "swarm.lock").chmod(0o666)
    for path in (shared / ".git", planted, *planted.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    victim = shared / "work" / "proj"
    victim.mkdir(parents=True)
    # The attacker holds the lock, so the record looks "running".
    fd = os.open(planted / "swarm.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert project_root(victim) == victim.resolve()
        assert default_state_dir(victim) == victim.resolve() / ".hivemind"
        down = _cli("swarm", "down", cwd=victim)
        down_direct = _cli("swarm", "down", "--state-dir", str(planted), cwd=victim)
        hook = _cli("hooks", "pre-task", "--description", "x", "--format", "json", cwd=victim)
        with pytest.raises(StateFolderError, match="belongs to uid"):
            stop_swarm(planted)
    finally:
        os.close(fd)
        EmbeddedRedis(victim / ".hivemind").stop()
    hook_json = json.loads(hook.stdout.strip().splitlines()[-1])
    outcomes = [
        down.returncode == 1 and "no swarm is running" in down.stderr,
        down_direct.returncode == 1 and "belongs to uid" in down_direct.stderr,
        hook_json.get("redis") == "embedded" and hook_json.get("recorded") is True,
        pid_alive(sleeper.pid),
    ]
    record(
        "5 shared host",
        "another user's .git + .hivemind (swarm.json naming a pid, world-writable lock) "
        "in a shared folder above ours: swarm down, swarm down --state-dir, a hook",
        tried=4,
        refused=sum(outcomes),
    )
    assert outcomes == [True, True, True, True], (down, down_direct, hook)


@pytest.mark.parametrize("planted_as", ["another user's folder", "symlink", "mode 777"])
def test_a_planted_socket_fallback_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted_as: str
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    base = tmp / f"hivemind-{os.getuid()}"
    if planted_as == "symlink":
        elsewhere = tmp / "attacker"
        elsewhere.mkdir(mode=0o700)
        base.symlink_to(elsewhere)
    else:
        base.mkdir(mode=0o700)
        if planted_as == "mode 777":
            base.chmod(0o777)
        else:
            os.chown(base, NOBODY, NOBODY)
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ".hivemind"  # too long for sun_path
    refused = 0
    try:
        EmbeddedRedis(deep).start()
    except StateFolderError:
        refused = 1
    record("5 shared host", f"pre-made hivemind-<uid> temp folder: {planted_as}", tried=1,
           refused=refused)  # fmt: skip
    assert refused == 1
    # The honest case still works: no folder yet, we make it (0700, ours).
    if base.is_symlink():
        base.unlink()
    else:
        shutil.rmtree(base)
    made = short_socket_dir(deep)
    assert made.parent == base and stat.S_IMODE(os.lstat(base).st_mode) == 0o700


def test_a_pid_file_naming_another_redis_or_a_reused_pid_is_not_signalled(
    tmp_path: Path, embedded: EmbeddedRedis
) -> None:
    other_pid = embedded.pid()
    assert other_pid is not None
    ours = EmbeddedRedis(ensure_state_dir(tmp_path / "ours"))
    ours.data_dir.mkdir(mode=0o700)
    # A process whose command line even names our socket, but started at another time.
    impostor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(ours.socket_path)]
    )
    try:
        forged = [
            f"{other_pid} {start_ticks(other_pid)}\n",  # another project's live redis-server
            f"{other_pid}\n",  # the same, as an old-style pid file
            f"{impostor.pid} {(start_ticks(impostor.pid) or 0) + 1}\n",  # a reused pid
        ]
        survived = 0
        for text in forged:
            ours.pid_file.write_text(text)
            assert ours.pid() is None
            ours.stop()
            survived += pid_alive(other_pid) and impostor.poll() is None
    finally:
        impostor.kill()
        impostor.wait()
    record("6 stale pids", "redis.pid naming another Redis / a reused pid; stop()", tried=3,
           refused=survived)  # fmt: skip
    assert survived == 3
    assert embedded.pid() == other_pid


def test_a_stale_swarm_json_during_a_new_start_is_not_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    state = ensure_state_dir(tmp_path / ".hivemind")
    new_supervisor = SupervisorLock(state)
    new_supervisor.acquire()  # starting: holds the lock, has not written swarm.json yet
    refused = 0
    try:
        for start in ((start_ticks(sleeper.pid) or 0) + 7, None):
            write_info(state, SwarmInfo(pid=sleeper.pid, namespace="default", redis_url="",
                                        embedded=True, state="ready", pid_start=start))  # fmt: skip
            try:
                stop_swarm(state, timeout_s=2, identify_s=0.3)
            except HivemindError as exc:
                refused += "nothing was signalled" in str(exc)
    finally:
        new_supervisor.release()
    record("6 stale pids", "stale swarm.json (reused pid) while a new supervisor starts",
           tried=2, refused=refused)  # fmt: skip
    assert refused == 2 and sleeper.poll() is None
