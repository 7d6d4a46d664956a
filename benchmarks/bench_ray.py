"""Ray done right (issue 15): footprint, start-up, imports, two nodes, sharded scale.

Run: ``.venv/bin/python -m benchmarks.bench_ray [--quick]``; writes
``benchmarks/results/ray.md``.

1. Idle footprint and start-up, alternating in the same run: the shipped
   swarm (``hivemind swarm up --detach``: our own lean, loopback Ray head),
   the previous way (the same supervisor code after ``ray.init()`` in the
   supervisor, with the kwargs it used to pass), and a bare ``ray.init``.
2. What the agents import on top of a bare Ray worker (anonymous memory per
   import, in a fresh interpreter that imported Ray's worker first).
3. Two Ray nodes on this machine (:mod:`benchmarks.ray_cluster`): reaction
   latency and decision p99 per node, guarded processes on both.
4. Scale: simulated targets (the soak harness's publishers) at 5 Hz over 2
   benchmarker shards, from 100 to 1,000 targets: samples dropped, decision
   p99, bus lag.

Every process started here is tracked and ended by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bench_foundation import (
    REAPER,
    alternate,
    footprint,
    machine_info,
    quiet_moment,
)

RESULTS = Path(__file__).resolve().parent / "results" / "ray.md"
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HIVEMIND = str(Path(PY).with_name("hivemind"))
MB = 2**20

# The supervisor as it was before issue 15: ray.init() in-process with these kwargs.
BEFORE = """
import logging, sys, threading, ray
ray.init(namespace="hivemind", include_dashboard=False, log_to_driver=False,
         logging_level=logging.WARNING, configure_logging=True, num_cpus=1,
         object_store_memory=80 * 2**20)
from hivemind.swarm.lifecycle.supervisor import Swarm, run_until_signalled
from hivemind.swarm.settings import load_settings
swarm = Swarm(load_settings())
swarm.start()
try:
    run_until_signalled(swarm, threading.Event())
finally:
    swarm.stop()
    ray.shutdown()
"""
BARE = """
import json, signal, sys, threading, time, ray
ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
stop.wait()
ray.shutdown()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "RAY_"))}
    env.update(extra)
    return env


def _role(name: str, cmd: str) -> str:
    table = (
        ("redis-server", "redis-server"),
        ("gcs_server", "gcs_server"),
        ("raylet", "raylet"),
        ("DashboardAgent", "dashboard agent"),
        ("RuntimeEnvAgent", "runtime-env agent"),
        ("dashboard.py", "API server (dashboard head)"),
        ("log_monitor", "log monitor"),
        ("monitor.py", "autoscaler monitor"),
        ("ray::IDLE", "idle worker"),
        ("Core", "agent actor"),
        ("supervisor", "supervisor"),
    )
    for needle, role in table:
        if needle in name or needle in cmd:
            return role
    return "supervisor" if "python" in name else name


def _measure(root: int, idle_s: float) -> dict[str, Any]:
    time.sleep(idle_s)
    mine = {p.pid for p in psutil.Process(root).children(recursive=True)} | {root}
    others = quiet_moment(10.0, mine)
    rows = footprint(root)
    per: dict[str, list[float]] = {}
    for r in rows:
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(psutil.Process(r.pid).cmdline())
            per.setdefault(_role(r.name, cmd), []).append(r.pss)
    return {
        "pss": sum(r.pss for r in rows),
        "anon": sum(r.anon for r in rows),
        "procs": len(rows),
        "per": per,
        "others": others,
    }


def _wait_ready(state: Path, pid: int, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((state / "swarm.json").read_text())
            if info.get("pid") == pid and info.get("state") == "ready":
                return
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                raise RuntimeError("supervisor exited before ready")
        if not psutil.pid_exists(pid):
            raise RuntimeError("supervisor exited before ready")
        time.sleep(0.02)
    raise RuntimeError("not ready in time")


def _stop(pid: int, timeout_s: float = 60.0) -> None:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout_s)


def side_shipped(tmp: Path, idle_s: float) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))
    t0 = time.perf_counter()
    up = subprocess.run(
        [HIVEMIND, "swarm", "up", "--detach", "--state-dir", str(state)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    ready = time.perf_counter() - t0
    if up.returncode != 0:
        raise RuntimeError(up.stderr.strip()[-300:])
    pid = json.loads((state / "swarm.json").read_text())["pid"]
    REAPER.track(pid)
    try:
        out = _measure(pid, idle_s)
    finally:
        subprocess.run(
            [HIVEMIND, "swarm", "down", "--state-dir", str(state)],
            env=_env(),
            capture_output=True,
            timeout=120,
        )
        REAPER.reap()
        shutil.rmtree(state, ignore_errors=True)
    out["ready_s"] = ready
    return out


def side_before(tmp: Path, idle_s: float) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-c", BEFORE],
        # RAY_TMPDIR: its own folder, so no other ray.init() on the machine finds this one.
        env=_env(HIVEMIND_STATE_DIR=str(state), RAY_TMPDIR=str(tmp)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO,
    )
    REAPER.track(proc.pid, tree=False)
    try:
        _wait_ready(state, proc.pid)
        ready = time.perf_counter() - t0
        REAPER.track(proc.pid)
        out = _measure(proc.pid, idle_s)
    finally:
        _stop(proc.pid)
        REAPER.reap()
        shutil.rmtree(state, ignore_errors=True)
    out["ready_s"] = ready
    return out


def side_bare(tmp: Path, idle_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-c", BARE],
        env=_env(RAY_TMPDIR=str(tmp)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    REAPER.track(proc.pid, tree=False)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("bare ray.init failed")
        ready = time.perf_counter() - t0
        REAPER.track(proc.pid)
        out = _measure(proc.pid, idle_s)
    finally:
        _stop(proc.pid)
        REAPER.reap()
    out["ready_s"] = ready
    return out


def _fmt(xs: list[float], digits: int = 0) -> str:
    med = statistics.median(xs)
    if len(xs) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def section_footprint(tmp: Path, repeats: int, idle_s: float) -> tuple[list[str], dict[str, Any]]:
    sides = {
        "shipped: `hivemind swarm up --detach` (own lean loopback head)": lambda: side_shipped(
            tmp, idle_s
        ),
        "before: same supervisor after in-process `ray.init()` (old kwargs)": lambda: side_before(
            tmp, idle_s
        ),
        "baseline: bare `ray.init(num_cpus=1, include_dashboard=False)`, no actors": lambda: (
            side_bare(tmp, idle_s)
        ),
    }
    res = alternate(sides, repeats)
    lines = [
        "### 1. Idle footprint and start-up to ready",
        "",
        f"{repeats} run(s) per side, alternating which goes first; PSS after {idle_s:.0f} s idle "
        "(smaps: shared pages split between the processes that map them, so a process's PSS "
        "falls when more Ray processes run); 'ready' is the whole command (shipped: "
        "`swarm up --detach` until it returns; before: process start until `swarm.json` "
        "says ready; bare: until `ray.init` returns). 'other Ray' counts foreign "
        "raylet/gcs_server processes (other engineers') at the moment of measuring.",
        "",
        "| side | processes | PSS MB, median (min-max) | anon MB | ready s | other Ray |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        lines.append(
            f"| {name} | {runs[0]['procs']} | {_fmt([r['pss'] for r in runs])} | "
            f"{_fmt([r['anon'] for r in runs])} | {_fmt([r['ready_s'] for r in runs], 2)} | "
            f"{max(r['others'] for r in runs)} |"
        )
    names = list(res)
    roles: list[str] = []
    for runs in res.values():
        for role in runs[0]["per"]:
            if role not in roles:
                roles.append(role)
    lines += [
        "",
        "PSS per process (MB, median over runs; count in brackets):",
        "",
        "| process | " + " | ".join(n.split(":")[0] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for role in roles:
        cells = []
        for n in names:
            vals = [r["per"].get(role) for r in res[n]]
            have = [v for v in vals if v]
            if not have:
                cells.append("-")
                continue
            each = statistics.median([statistics.mean(v) for v in have])
            cells.append(f"{each:.0f}" + (f" (x{len(have[0])})" if len(have[0]) > 1 else ""))
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    shipped = statistics.median([r["pss"] for r in res[names[0]]])
    before = statistics.median([r["pss"] for r in res[names[1]]])
    up = statistics.median([r["ready_s"] for r in res[names[0]]])
    up_before = statistics.median([r["ready_s"] for r in res[names[1]]])
    lines += [
        "",
        f"Aim: at most 400 MB PSS (moonshot 300). Shipped: {shipped:.0f} MB "
        f"({'meets' if shipped <= 400 else 'does not meet'} the aim; before: {before:.0f} MB, "
        f"{shipped - before:+.0f} MB). Start-up aim: no worse than before. Shipped "
        f"{up:.2f} s vs before {up_before:.2f} s in this run "
        f"({'meets' if up <= up_before * 1.05 else 'does not meet'} the aim).",
        "",
    ]
    return lines, {"shipped_pss": shipped, "before_pss": before}


IMPORTS = """
import os, sys, json
def anon():
    for l in open(f"/proc/{os.getpid()}/smaps_rollup"):
        if l.startswith("Anonymous:"):
            return int(l.split()[1]) / 1024
    return 0.0
import ray._private.workers.default_worker, ray  # noqa
out = [("ray worker (python + ray)", anon())]
for m in sys.argv[1:]:
    a = anon(); __import__(m); out.append((m, anon() - a))
print(json.dumps(out))
"""


def section_imports(runs: int) -> list[str]:
    mods = [
        "redis",
        "pydantic",
        "hivemind.swarm.messages",
        "hivemind.swarm.agent.base",
        "hivemind.agents.actors.benchmarker",
        "hivemind.agents.actors.optimizers",
        "hivemind.coordinator.coordinator",
        "hivemind.swarm.settings",
        "hivemind.swarm.lifecycle.supervisor",
    ]
    got: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [PY, "-c", IMPORTS, *mods], capture_output=True, text=True, check=True, env=_env()
        )
        for name, mb in json.loads(out.stdout):
            got.setdefault(name, []).append(mb)
    lines = [
        "### 2. What the agents and the supervisor import on top of Ray",
        "",
        f"Anonymous memory (MB) each import adds, in order, in a fresh interpreter that first "
        f"imported Ray's worker module; median of {runs}. The first row is the whole "
        "interpreter after `import ray`.",
        "",
        "| import | anon MB | used by |",
        "|---|---|---|",
    ]
    users = {
        "redis": "every agent (redis-py client), supervisor",
        "pydantic": "message models: every agent, supervisor",
        "hivemind.swarm.messages": "every agent",
        "hivemind.swarm.settings": "supervisor only (pydantic-settings)",
        "hivemind.swarm.lifecycle.supervisor": "supervisor only",
    }
    for name, vals in got.items():
        lines.append(f"| `{name}` | {statistics.median(vals):.1f} | {users.get(name, 'agents')} |")
    lines.append("")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", default=[], help="footprint|imports|nodes|scale")
    args = ap.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hm-bench-ray-"))
    quick = args.quick
    sections = args.only or ["footprint", "imports", "nodes", "scale"]
    lines = [
        "## Ray: footprint, start-up, two nodes, sharded scale (issue 15)",
        "",
        "Command: `.venv/bin/python -m benchmarks.bench_ray" + (" --quick`" if quick else "`"),
        "",
        *machine_info(),
        "",
        "Measured while the machine was shared with other engineers' test runs: timings are "
        "noisy, PSS moves with foreign Ray processes (shared pages), so every comparison is "
        "with a baseline from the same run.",
        "",
    ]
    try:
        if "footprint" in sections:
            body, _ = section_footprint(tmp, 1 if quick else 2, 3.0 if quick else 8.0)
            lines += body
        if "imports" in sections:
            lines += section_imports(1 if quick else 3)
        if "nodes" in sections:
            from benchmarks.ray_sections import section_nodes

            lines += section_nodes(tmp, quick)
        if "scale" in sections:
            from benchmarks.ray_sections import section_scale

            lines += section_scale(tmp, quick)
    finally:
        left = REAPER.reap()
        shutil.rmtree(tmp, ignore_errors=True)
    lines.append(
        f"Load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}. "
        f"Total benchmark time: {time.perf_counter() - started:.0f} s."
        + (f" Left running and reaped: {left}." if left else "")
    )
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
