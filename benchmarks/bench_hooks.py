"""Hook latency, session reads on 100,000 events, and 50 concurrent hooks.

Run: ``.venv/bin/python -m benchmarks.bench_hooks`` (about a minute on 2 cores).
Every hook call is a whole ``hivemind hooks ...`` process, as a coding agent
runs it, timed from spawn to exit; baselines are measured in the same run.
Writes ``benchmarks/results/hooks.md``.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hivemind.coordinator.sessions.recorder import SessionStore
from hivemind.coordinator.sessions.store import append_args
from hivemind.swarm.keys import Keys
from hivemind.swarm.redis.connection import connect
from hivemind.swarm.redis.server import EmbeddedRedis

RUNS = 30
EVENTS = 100_000
HIVEMIND = str(Path(sys.executable).with_name("hivemind"))
RESULTS = Path(__file__).resolve().parent / "results" / "hooks.md"


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    dt = (time.perf_counter() - t0) * 1000
    if r.returncode != 0 or r.stderr:
        raise SystemExit(f"{cmd} failed: {r.stderr.decode()[:300]}")
    return dt


def _series(fn: Callable[[int], float], n: int = RUNS) -> list[float]:
    return [fn(i) for i in range(n)]


def _stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return statistics.median(xs), p95


def _redis_version(url: str) -> str:
    c = connect(url)
    try:
        return str(c.info("server")["redis_version"])
    finally:
        c.close()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    (work / ".git").mkdir()
    state = work / ".hivemind"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "CLAUDE_"))}
    env.update(HIVEMIND_STATE_DIR=str(state), HIVEMIND_NAMESPACE="bench")
    py = sys.executable
    rows: list[tuple[str, list[float]]] = []

    def hook(*args: str) -> Callable[[int], float]:
        return lambda i: _timed([HIVEMIND, "hooks", *(a.format(i=i) for a in args)], env, work)

    rows.append(
        ("`python -c pass` (baseline)", _series(lambda i: _timed([py, "-c", "pass"], env, work)))
    )
    rows.append(
        (
            "`python -c 'import redis'` (baseline)",
            _series(lambda i: _timed([py, "-c", "import redis"], env, work)),
        )
    )
    # cold: no server running, each call leases (starts) it and, being the last user, stops it
    rows.append(
        (
            "hook `pre-task`, cold (starts + stops embedded Redis)",
            _series(hook("pre-task", "-d", "cold {i}", "--session-id", "cold")),
        )
    )
    embedded = EmbeddedRedis(state)
    with embedded.lease() as url:
        version = _redis_version(url)
        rows.append(
            (
                "hook `pre-task`, warm (server up)",
                _series(hook("pre-task", "-d", "warm {i}", "--session-id", "warm")),
            )
        )
        rows.append(
            (
                "hook `post-edit --memory-key`, warm",
                _series(
                    hook(
                        "post-edit",
                        "--file",
                        "f{i}.py",
                        "--memory-key",
                        "k/{i}",
                        "--session-id",
                        "warm",
                    )
                ),
            )
        )
        rows.append(
            (
                "hook `notify --format json`, warm",
                _series(
                    hook("notify", "--message", "m {i}", "--session-id", "warm", "--format", "json")
                ),
            )
        )

        # a 100,000-event session
        client = connect(url)
        store = SessionStore(client, Keys("bench"))
        sid, _ = store.ensure("big", {"source": "bench"})
        t0 = time.perf_counter()
        for start in range(0, EVENTS, 5000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, start + 5000):
                k, a = append_args(
                    store.keys,
                    sid,
                    "decision" if i % 3 else "ack",
                    {"i": i, "reason": "bench"},
                    dedup_key=f"d{i}",
                    counters={"bytes_freed": 1000} if i % 3 == 0 else None,
                )
                store._append(keys=k, args=a, client=pipe)
            pipe.execute()
        fill_s = time.perf_counter() - t0
        for i in range(20):
            store.learned_record(sid, f"action{i % 5}", 1000 * i, float(i))
        snap = store.snapshot(sid)
        assert snap.event_count == EVENTS and snap.stream_len >= EVENTS, snap.stream_len

        def snap_ms(_: int) -> float:
            t = time.perf_counter()
            store.snapshot(sid)
            return (time.perf_counter() - t) * 1000

        big_rows = [
            (f"`SessionStore.snapshot` on {EVENTS:,} events (in process)", _series(snap_ms)),
            (
                f"`hivemind session show big --json` on {EVENTS:,} events (process)",
                _series(
                    lambda i: _timed([HIVEMIND, "session", "show", "big", "--json"], env, work), 10
                ),
            ),
            (
                f"`hivemind session restore big` dry-run on {EVENTS:,} events (process)",
                _series(lambda i: _timed([HIVEMIND, "session", "restore", "big"], env, work), 10),
            ),
            (
                f"`hivemind hooks session-restore --session-id big` on {EVENTS:,} events (process)",
                _series(
                    lambda i: _timed(
                        [HIVEMIND, "hooks", "session-restore", "--session-id", "big"], env, work
                    ),
                    10,
                ),
            ),
        ]

        def burst(sid50: str) -> tuple[float, int]:
            t = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [
                        HIVEMIND,
                        "hooks",
                        "pre-task",
                        "-d",
                        f"c{i}",
                        "--task-id",
                        f"t{i}",
                        "--session-id",
                        sid50,
                    ],
                    env=env,
                    cwd=work,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for i in range(50)
            ]
            bad = sum(p.wait() != 0 or bool(p.stderr and p.stderr.read()) for p in procs)
            for p in procs:
                if p.stderr:
                    p.stderr.close()
            assert bad == 0
            return (time.perf_counter() - t) * 1000, client.xlen(store.keys.session_events(sid50))

        warm50 = burst("burst-warm")
        client.close()
    cold_t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                HIVEMIND,
                "hooks",
                "pre-task",
                "-d",
                f"c{i}",
                "--task-id",
                f"t{i}",
                "--session-id",
                "burst-cold",
            ],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(50)
    ]
    assert all(p.wait() == 0 for p in procs)
    cold50_ms = (time.perf_counter() - cold_t) * 1000
    with embedded.lease() as url:
        c = connect(url)
        cold50 = (cold50_ms, c.xlen(Keys("bench").session_events("burst-cold")))
        c.close()

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "## Hooks and sessions",
        "",
        "`.venv/bin/python -m benchmarks.bench_hooks` · "
        f"{time.strftime('%Y-%m-%d')} · "
        f"{os.cpu_count()} CPUs ({cpu}) · Linux {platform.release()} · "
        f"Python {platform.python_version()} · "
        f"redis-server {version} (embedded, unix socket, AOF everysec)",
        "",
        f"One hook call = one whole process, spawn to exit, stdin `/dev/null`; {RUNS} runs each.",
        "",
        "| what | median ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for name, xs in rows + big_rows:
        med, p95 = _stats(xs)
        lines.append(f"| {name} | {med:.1f} | {p95:.1f} |")
    lines += [
        "",
        f"Filling the {EVENTS:,}-event session through the append script (pipelined): "
        f"{fill_s:.1f} s.",
        "",
        "| 50 concurrent `hooks pre-task` processes, one session | wall ms | rows present |",
        "|---|---:|---:|",
        f"| warm (server up) | {warm50[0]:.0f} | {warm50[1]}/50 |",
        f"| cold (no server: the hooks start and stop it among themselves) "
        f"| {cold50[0]:.0f} | {cold50[1]}/50 |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"written to {RESULTS}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
