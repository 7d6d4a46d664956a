"""Sections 3 and 4 of ``bench_ray``: two Ray nodes, and the sharded sample stream at scale.

Both watch the bus from outside (a Redis subscriber in this process), so
nothing in the swarm is instrumented for the benchmark: reaction latency is
``Ack.applied_ts - Ack.sample_ts`` and decision latency is
``Decision.ts - Decision.event_ts`` (the benchmarker's event to the
coordinator's decision: bus, queueing and the policy), over real decisions
only. Bus lag is the time from a sample's ``ts`` to its arrival here, on one
of the 16 sample slots (a sixteenth of the targets), so this process does
not become the bottleneck it measures.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_foundation import REAPER  # noqa: E402
from hivemind.swarm.keys import Keys, pick_slot  # noqa: E402
from hivemind.swarm.redis.bus import peek_message  # noqa: E402
from hivemind.swarm.redis.connection import connect  # noqa: E402

PY = sys.executable
HIVEMIND = str(Path(PY).with_name("hivemind"))
LEAKY = str(REPO / "tests" / "swarm" / "leaky_app.py")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "RAY_"))}
    env.update(extra)
    return env


class Wire:
    """Decisions and acks (all), and samples of one slot, as they cross the bus."""

    def __init__(self, url: str, ns: str, sample_slot: int | None = None) -> None:
        self.keys = Keys(ns)
        self.client = connect(url)
        self.ps = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self.ps.subscribe(self.keys.decisions, self.keys.acks)
        if sample_slot is not None:
            self.ps.subscribe(self.keys.sample_channel(sample_slot))
        self.decision_ms: dict[str, list[float]] = {}
        self.reaction_ms: dict[str, list[float]] = {}
        self.lag_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self.ps.get_message(timeout=0.2)
            if m is None:
                continue
            now = time.time()
            data = peek_message(m["data"]).model_dump()
            kind = data.get("kind")
            if kind == "decision":
                ms = (data["ts"] - data["event_ts"]) * 1000
                self.decision_ms.setdefault(data["target"], []).append(ms)
            elif kind == "ack" and data.get("sample_ts") and data.get("applied_ts"):
                ms = (data["applied_ts"] - data["sample_ts"]) * 1000
                self.reaction_ms.setdefault(data["target"], []).append(ms)
            elif kind == "sample":
                self.lag_ms.append((now - data["ts"]) * 1000)

    def reset(self) -> None:
        self.decision_ms, self.reaction_ms, self.lag_ms = {}, {}, []

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.ps.close()
        self.client.close()


def _supervisor(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [PY, "-m", "hivemind.swarm.lifecycle.supervisor"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115
        cwd=REPO,
    )
    REAPER.track(proc.pid, tree=False)
    return proc


def _wait_ready(
    state: Path, proc: subprocess.Popen[bytes], timeout_s: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("supervisor exited")
        try:
            info: dict[str, Any] = json.loads((state / "swarm.json").read_text())
            if info.get("state") == "ready":
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("swarm not ready")


def _stop(proc: subprocess.Popen[Any], timeout_s: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- 3. two nodes ---------------------------------------------------------------


def section_nodes(tmp: Path, quick: bool) -> list[str]:
    from tests.swarm.ray_cluster import LocalCluster

    per_node = 1 if quick else 2
    seconds = 20.0 if quick else 40.0
    cluster = LocalCluster()
    sup = None
    apps: list[subprocess.Popen[str]] = []
    wire = None
    try:
        cluster.start("node1")
        cluster.add_node("node2")
        REAPER.track(cluster.proc.pid if cluster.proc else 0)
        state = cluster.root / "st"
        state.mkdir(mode=0o700)
        ns = "bn" + os.urandom(3).hex()
        env = _clean_env(
            **cluster.driver_env(),
            HIVEMIND_STATE_DIR=str(state),
            HIVEMIND_NAMESPACE=ns,
            HIVEMIND_RAY_ADDRESS=cluster.address,
        )
        t0 = time.perf_counter()
        sup = _supervisor(env, cluster.root / "sup.log")
        info = _wait_ready(state, sup)
        ready_s = time.perf_counter() - t0
        keys = Keys(ns)
        c = connect(info["redis_url"])
        bench = {k.decode(): v.decode() for k, v in c.hgetall(keys.bench_slots).items()}
        nodes = sorted(k.decode() for k in c.hkeys(keys.sample_nodes))
        wire = Wire(info["redis_url"], ns)
        app_env = _clean_env(
            HIVEMIND_REDIS_URL=info["redis_url"],
            HIVEMIND_NAMESPACE=ns,
            HIVEMIND_SECRET=(state / "secret").read_text().strip(),
        )
        where: dict[str, str] = {}
        for node in ("node1", "node2"):
            for i in range(per_node):
                name = f"{node}-app{i}"
                where[name] = node
                apps.append(
                    subprocess.Popen(
                        [
                            HIVEMIND,
                            "run",
                            "--target-mb",
                            "60",
                            "--name",
                            name,
                            "--",
                            PY,
                            LEAKY,
                            str(seconds + 10),
                            "40",
                        ],
                        env={**app_env, "HIVEMIND_NODE": node},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        text=True,
                    )
                )
                REAPER.track(apps[-1].pid, tree=False)
        time.sleep(seconds)
        c.close()
    finally:
        for app in apps:
            REAPER.track(app.pid)
            if app.poll() is None:
                app.kill()
            app.wait(10)
        if wire is not None:
            wire.close()
        if sup is not None:
            _stop(sup)
        cluster.stop()
    lines = [
        "### 3. Two Ray nodes on this machine",
        "",
        f"A real two-node Ray cluster (`ray.cluster_utils.Cluster` in a helper process, "
        f"both raylets on 127.0.0.1, token auth; `tests/swarm/ray_cluster.py`); the swarm "
        f"joins it with `--ray-address` and places one benchmarker per node (node affinity). "
        f"{per_node} guarded leaky app(s) per node (`hivemind run --target-mb 60`, 40 MB/s, "
        f"`HIVEMIND_NODE` naming their node, Redis found by URL), {seconds:.0f} s. "
        f"Swarm ready {ready_s:.1f} s after the supervisor started. Benchmarkers: "
        + ", ".join(f"`{k}` slots {v}" for k, v in sorted(bench.items()))
        + f"; nodes with a benchmarker: {', '.join(nodes)}.",
        "",
        "| node | targets | reactions | reaction p50 ms | reaction p99 ms | decisions | "
        "event->decision p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    assert wire is not None
    for node in ("node1", "node2"):
        names = [n for n, w in where.items() if w == node]
        react = [x for n in names for x in wire.reaction_ms.get(n, [])]
        dec = [x for n in names for x in wire.decision_ms.get(n, [])]
        lines.append(
            f"| {node} | {len(names)} | {len(react)} | {_pct(react, 0.5):.0f} | "
            f"{_pct(react, 0.99):.0f} | {len(dec)} | {_pct(dec, 0.5):.1f} | {_pct(dec, 0.99):.1f} |"
        )
    lines.append("")
    return lines


# -- 4. scale ---------------------------------------------------------------------


def _run_scale(url: str, ns: str, targets: int, hz: float, seconds: float) -> dict[str, Any]:
    from benchmarks.soak import _publisher

    keys = Keys(ns)
    c = connect(url)
    names = [f"sim{targets}-{i:04d}" for i in range(targets)]
    slot = pick_slot(names[0])
    wire = Wire(url, ns, sample_slot=slot)
    before = {k.decode(): int(float(v)) for k, v in c.hgetall(keys.counters).items()}
    publishers = 4
    share = [names[i::publishers] for i in range(publishers)]
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_publisher, args=(url, ns, s, hz, seconds, out)) for s in share]
    for p in procs:
        p.start()
        REAPER.track(p.pid or 0, tree=False)
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    time.sleep(2.5)  # benchmarkers add their counts to Redis once a second
    after = {k.decode(): int(float(v)) for k, v in c.hgetall(keys.counters).items()}
    wire.close()
    c.close()
    published = sum(r["samples"] for r in results)
    counted = after.get("samples", 0) - before.get("samples", 0)
    dec = [x for xs in wire.decision_ms.values() for x in xs]
    return {
        "targets": targets,
        "published": published,
        "counted": counted,
        "dropped": published - counted,
        "events": after.get("events", 0) - before.get("events", 0),
        "decisions": len(dec),
        "dec_p50": _pct(dec, 0.5),
        "dec_p99": _pct(dec, 0.99),
        "lag_p50": _pct(wire.lag_ms, 0.5),
        "lag_p99": _pct(wire.lag_ms, 0.99),
        "lag_n": len(wire.lag_ms),
        "commands": sum(r["commands"] for r in results),
        "acks": sum(r["acks"] for r in results),
    }


def section_scale(tmp: Path, quick: bool) -> list[str]:
    sizes = [100, 1000] if quick else [100, 300, 1000, 2000]
    seconds = 15.0 if quick else 25.0
    hz = 5.0
    state = Path(tempfile.mkdtemp(prefix="hs", dir="/tmp"))
    ns = "bs" + os.urandom(3).hex()
    env = _clean_env(
        HIVEMIND_STATE_DIR=str(state),
        HIVEMIND_NAMESPACE=ns,
        HIVEMIND_BENCHMARKERS_PER_NODE="2",
        HIVEMIND_TARGET_MB="512",
    )
    sup = _supervisor(env, tmp / "scale-sup.log")
    rows = []
    try:
        info = _wait_ready(state, sup)
        REAPER.track(sup.pid)
        keys = Keys(ns)
        c = connect(info["redis_url"])
        bench = {k.decode(): v.decode() for k, v in c.hgetall(keys.bench_slots).items()}
        c.close()
        for n in sizes:
            rows.append(_run_scale(info["redis_url"], ns, n, hz, seconds))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        _stop(sup)
        REAPER.reap()
        shutil.rmtree(state, ignore_errors=True)
    lines = [
        "### 4. Sharded sample stream: 100 to 1,000+ simulated targets at 5 Hz",
        "",
        "The shipped swarm on its own head with `HIVEMIND_BENCHMARKERS_PER_NODE=2` "
        "(benchmarkers: "
        + ", ".join(f"`{k}` slots {v}" for k, v in sorted(bench.items()))
        + f"); the soak harness's publishers (4 processes; a tenth of the targets leak past "
        f"their target until a command arrives; every command is acked) for {seconds:.0f} s "
        f"per size. Dropped = samples published minus samples the benchmarkers counted. "
        f"Event->decision over real decisions; bus lag over the samples of one slot.",
        "",
        "| targets | samples published | dropped | events | decisions | "
        "event->decision p50 ms | p99 ms | bus lag p50 ms | p99 ms | commands / acks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['targets']} | {r['published']} | {r['dropped']} | {r['events']} | "
            f"{r['decisions']} | {r['dec_p50']:.1f} | {r['dec_p99']:.1f} | "
            f"{r['lag_p50']:.1f} | {r['lag_p99']:.1f} | {r['commands']} / {r['acks']} |"
        )
    at1000 = next((r for r in rows if r["targets"] == 1000), None)
    if at1000 is not None:
        lines += [
            "",
            f"Aims at 1,000 targets: 0 samples dropped ({at1000['dropped']}: "
            f"{'meets' if at1000['dropped'] <= 0 else 'does not meet'}); decision p99 under "
            f"50 ms ({at1000['dec_p99']:.1f} ms: "
            f"{'meets' if at1000['dec_p99'] < 50 else 'does not meet'}).",
        ]
    lines.append("")
    return lines
