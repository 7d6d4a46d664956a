"""The swarm loop, measured: reaction latency, runtime overhead, import cost, scale.

Run: ``.venv/bin/python -m benchmarks.bench_loop [--quick]``. Starts its own
swarm (real local Ray, embedded redis-server) in a temporary state folder,
runs real guarded processes through ``hivemind run``, and writes
``benchmarks/results/loop.md``.

- Reaction latency: time from the sample whose RSS crossed a threshold to
  the command applied in the target, over at least 1,000 reactions, split
  into sampling+detection, bus+policy, optimizer agent+bus, apply.
- Runtime overhead at 20 Hz: CPU share and added RSS of an idle guarded
  process vs the same process unguarded, same run.
- Import cost: ``import hivemind`` and ``attach()`` vs a bare interpreter.
- Scale: N small guarded processes at 10 Hz on one swarm: coordinator
  decision p99 and bus lag (sample publish to receipt by a subscriber).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from hivemind.swarm.bench.measure import fmt_spread, machine_info
from hivemind.swarm.lifecycle.supervisor import Swarm
from hivemind.swarm.messages import MemorySample
from hivemind.swarm.redis.bus import peek_message
from hivemind.swarm.settings import load_settings
from hivemind.swarm.target.launch import guarded_env

RESULTS = Path(__file__).resolve().parent / "results" / "loop.md"
ROOT = Path(__file__).resolve().parent.parent


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def verdict(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def child_env(state: Path, **kw: Any) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    base["PYTHONPATH"] = str(ROOT)
    return guarded_env(state_dir=state, base=base, **kw)


def latency(swarm: Swarm, state: Path, reactions: int, procs: int) -> dict[str, Any]:
    """Run ``procs`` togglers until ``reactions`` acks with timings have arrived."""
    assert swarm.redis is not None
    swarm.redis.delete(swarm.keys.latency_raw)
    children = []
    for i in range(procs):
        env = child_env(state, target_mb=64, name=f"toggle-{i}")
        cmd = [sys.executable, "-m", "benchmarks.toggler", "600", "48", "0.15"]
        children.append(subprocess.Popen(cmd, env=env, cwd=ROOT))
    t0 = time.monotonic()
    try:
        while swarm.redis.llen(swarm.keys.latency_raw) < reactions:
            if time.monotonic() - t0 > 900:
                break
            time.sleep(0.5)
    finally:
        for c in children:
            c.kill()
            c.wait()
    rows = [json.loads(r) for r in swarm.redis.lrange(swarm.keys.latency_raw, 0, -1)]
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
    names = ["total", "sampling+detection", "bus+policy", "agent+bus to target", "apply"]
    return {
        "n": len(rows),
        "seconds": time.monotonic() - t0,
        "parts": {n: list(map(float, c)) for n, c in zip(names, cols, strict=True)},
    }


IDLE = "import time\nwhile True: time.sleep(1)\n"


def overhead(state: Path, seconds: float) -> dict[str, dict[str, float]]:
    """CPU share and RSS of an idle process, unguarded vs guarded at 20 Hz, alternating."""
    out: dict[str, dict[str, list[float]]] = {
        s: {"cpu_pct": [], "rss_mb": []} for s in ("unguarded", "guarded")
    }
    for rep in range(2):
        for side in ("unguarded", "guarded") if rep % 2 == 0 else ("guarded", "unguarded"):
            env = child_env(state, target_mb=1536, name=f"idle-{side}-{rep}", sample_hz=20)
            if side == "unguarded":
                env = {k: v for k, v in env.items() if k != "HIVEMIND_ATTACH"}
            p = subprocess.Popen([sys.executable, "-c", IDLE], env=env)
            ps = psutil.Process(p.pid)
            time.sleep(3)  # start-up and imports are not overhead
            c0 = sum(ps.cpu_times()[:2])
            time.sleep(seconds)
            c1 = sum(ps.cpu_times()[:2])
            out[side]["cpu_pct"].append((c1 - c0) / seconds * 100)
            out[side]["rss_mb"].append(ps.memory_info().rss / 2**20)
            p.kill()
            p.wait()
    return {s: {k: statistics.median(v) for k, v in d.items()} for s, d in out.items()} | {
        "raw": out  # type: ignore[dict-item]
    }


def import_cost(state: Path, runs: int) -> dict[str, list[float]]:
    """Whole-process wall time of three one-liners, alternating, ``runs`` each."""
    env = child_env(state)
    env.pop("HIVEMIND_ATTACH")
    env.pop("PYTHONPATH")
    cases = {
        "python -c pass": "pass",
        "import hivemind": "import hivemind",
        "import hivemind; hivemind.attach()": "import hivemind; hivemind.attach()",
        "import ray (reference)": "import ray",
    }
    out: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(runs):
        for name in list(cases)[r % 4 :] + list(cases)[: r % 4]:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", cases[name]], env=env, check=True)
            out[name].append((time.perf_counter() - t0) * 1000)
    return out


def _ray_loaded_after_attach(state: Path) -> bool:
    env = child_env(state)
    env.pop("HIVEMIND_ATTACH")
    code = "import sys, hivemind; hivemind.attach(); print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip() == "True"


SMALL = (
    "import sys, time\nhot = b'x' * (int(sys.argv[1]) * 2**20)\ntime.sleep(float(sys.argv[2]))\n"
)


def scale(swarm: Swarm, state: Path, n: int, seconds: float) -> dict[str, Any]:
    """``n`` small guarded processes at 10 Hz, a fifth of them over their target."""
    assert swarm.redis is not None
    lags: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        assert swarm.redis is not None
        ps = swarm.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        ps.subscribe(swarm.keys.samples)
        while not stop.is_set():
            m = ps.get_message(timeout=0.2)
            if m is None:
                continue
            now = time.time()
            s = peek_message(m["data"])  # sealed by the target; we only read the timestamp
            if isinstance(s, MemorySample):
                lags.append((now - s.ts) * 1000)
        ps.close()

    children = []
    for i in range(n):
        hot = 60 if i % 5 == 0 else 0  # over a 60 MB target: decisions keep coming
        env = child_env(state, target_mb=60, name=f"scale-{i}", sample_hz=10)
        cmd = [sys.executable, "-c", SMALL, str(hot), str(seconds + 60)]
        children.append(subprocess.Popen(cmd, env=env))
    started = time.monotonic()
    # wait until every target reports, then measure
    while time.monotonic() - started < 120:
        if len(list(swarm.redis.scan_iter(match=swarm.keys.target_pattern, count=1000))) >= n:
            break
        time.sleep(0.5)
    ramp = time.monotonic() - started
    from hivemind.coordinator.coordinator import Coordinator

    coord = Coordinator.lookup(swarm.keys.ns)
    before = int(swarm.redis.hget(swarm.keys.counters, "decisions") or 0)
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join()
    info = coord.ping()
    decisions = int(swarm.redis.hget(swarm.keys.counters, "decisions") or 0) - before
    for c in children:
        c.kill()
        c.wait()
    return {
        "n": n,
        "ramp_s": ramp,
        "decisions": decisions,
        "decision_ms_p50": info.get("decision_ms_p50"),
        "decision_ms_p99": info.get("decision_ms_p99"),
        "lags_ms": lags,
        "samples_per_s": len(lags) / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer reactions, smaller scale")
    args = ap.parse_args()
    reactions = 200 if args.quick else 1000
    n_scale = 20 if args.quick else 100
    tmp = Path(tempfile.mkdtemp(prefix="hm-bench-loop-"))
    state = tmp / ".hivemind"
    settings = load_settings(state_dir=state, namespace="benchloop")
    lines = [
        "## Swarm loop (issue 4)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.bench_loop{' --quick' if args.quick else ''}`"
        f" · {time.strftime('%Y-%m-%d')}",
        "",
    ]
    m = machine_info()
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}, "
        f"ray {m['versions']['ray']}, redis-py {m['versions']['redis']}. "
        "A shared 2-core machine: figures are noisy, read the spread.",
        "",
    ]
    with Swarm(settings) as swarm:
        lat = latency(swarm, state, reactions, procs=4)
        parts = lat["parts"]
        lines += [
            f"### Reaction latency: sample crossing a threshold -> command applied ({lat['n']} "
            f"reactions from 4 guarded processes swinging between conservative and emergency "
            f"(48 MB held and dropped every 150 ms, target 64 MB), {lat['seconds']:.0f} s)",
            "",
            "| part | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|",
        ]
        for name, xs in parts.items():
            if xs:
                lines.append(
                    f"| {name} | {pct(xs, 0.5):.1f} | {pct(xs, 0.99):.1f} | {max(xs):.1f} |"
                )
        if parts["total"]:
            p50, p99 = pct(parts["total"], 0.5), pct(parts["total"], 0.99)
            lines += [
                "",
                f"Aim p50 < 60 ms: **{'holds' if p50 < 60 else 'does not hold'}** ({p50:.1f}); "
                f"aim p99 < 250 ms: **{'holds' if p99 < 250 else 'does not hold'}** ({p99:.1f}). "
                "For reference: Ray's memory monitor polls every 250 ms, earlyoom up to 10 times "
                "a second. Sampling is at 20 Hz, so up to 50 ms of 'sampling+detection' is the "
                "wait for the next sample (the crossing is timed from that sample, not from the "
                "allocation).",
                "",
            ]
        ov = overhead(state, 8 if args.quick else 20)
        cpu_added = ov["guarded"]["cpu_pct"] - ov["unguarded"]["cpu_pct"]
        rss_added = ov["guarded"]["rss_mb"] - ov["unguarded"]["rss_mb"]
        lines += [
            "### Runtime overhead in an idle guarded process (20 Hz), same run",
            "",
            "| side | CPU % of one core | RSS MB |",
            "|---|---:|---:|",
            f"| unguarded | {ov['unguarded']['cpu_pct']:.2f} | {ov['unguarded']['rss_mb']:.1f} |",
            f"| guarded | {ov['guarded']['cpu_pct']:.2f} | {ov['guarded']['rss_mb']:.1f} |",
            "",
            f"Added: {cpu_added:.2f} % of a core (aim < 1 %: **{verdict(cpu_added < 1)}**), "
            f"{rss_added:.1f} MB RSS (aim < 5 MB: **{verdict(rss_added < 5)}**). "
            "The runtime speaks RESP itself and imports pydantic only when the first "
            "command arrives; an idle guarded process never loads redis-py.",
            "",
        ]
        ic = import_cost(state, 5 if args.quick else 10)
        ray_loaded = _ray_loaded_after_attach(state)
        base_ms = statistics.median(ic["python -c pass"])
        added = {k: statistics.median(v) - base_ms for k, v in ic.items()}
        lines += [
            "### Import cost in the guarded process (whole `python -c` process, ms)",
            "",
            "| command | median (min-max) |",
            "|---|---|",
            *[f"| `{k}` | {fmt_spread(v, 1)} |" for k, v in ic.items()],
            "",
            f"Ray imported by `attach()`: **{'yes' if ray_loaded else 'no'}**. "
            f"`import hivemind` adds {added['import hivemind']:.0f} ms and "
            f"`attach()` {added['import hivemind; hivemind.attach()']:.0f} ms over a bare "
            f"interpreter (aim < 100 ms: **{verdict(added['import hivemind'] < 100)}**).",
            "",
        ]
        sc = scale(swarm, state, n_scale, 10 if args.quick else 20)
        lags = sc["lags_ms"]
        lines += [
            f"### Scale: {sc['n']} guarded processes at 10 Hz on one swarm",
            "",
            f"- all targets reporting after {sc['ramp_s']:.0f} s (process start-up)",
            f"- samples on the bus: {sc['samples_per_s']:.0f}/s; bus lag (publish -> received "
            f"by a subscriber) p50 {pct(lags, 0.5):.1f} ms, p99 {pct(lags, 0.99):.1f} ms"
            if lags
            else "- no samples received",
            f"- decisions in the window: {sc['decisions']}; coordinator decision time "
            f"(policy + publish) p50 {sc['decision_ms_p50'] or 0:.2f} ms, "
            f"p99 {sc['decision_ms_p99'] or 0:.2f} ms: aim p99 < 20 ms "
            f"**{verdict((sc['decision_ms_p99'] or 0) < 20)}**",
            "",
            "How it grows: every sample goes through one benchmarker actor (one pub/sub "
            "subscriber parsing JSON, ~20-40 µs each), so one benchmarker carries a few "
            "thousand samples a second; the coordinator only sees level changes and repeats "
            "(5/s per hot target). For 1,000 targets: shard samples by target hash over "
            "several channels and benchmarker actors (one per node on a Ray cluster, as the "
            "design says), and batch samples per process.",
            "",
        ]
    RESULTS.parent.mkdir(exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not args.quick or not RESULTS.exists():
        RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
