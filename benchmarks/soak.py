"""Soak: 200 simulated guarded processes at 20 Hz against the swarm, for N minutes.

Run with ``make soak`` (5 minutes) or ``python -m benchmarks.soak --minutes 1``.
Not in CI. Starts an embedded redis-server and the four agent cores in this
process (the same classes the Ray actors wrap; ``--ray`` is not offered: the
cores are what grows or not). Publisher processes each simulate a share of
the targets: realistic RSS (150-600 MB), a tenth of them leaking past their
target until a command arrives, and every command is acked like the
runtime does. Every 10 s it records this process's RSS (the agents), Redis
``used_memory``, the session stream and latency list lengths, and the
coordinator's decision p99. At the end: commands sent vs acks received.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


def _publisher(
    url: str,
    ns: str,
    names: list[str],
    hz: float,
    seconds: float,
    out: Any,
    key: bytes,
    status_every_s: float = 0.0,
) -> None:
    """Simulate ``names`` for ``seconds``; with ``status_every_s`` also keep each target's
    status hash fresh as the runtime does (``swarm status`` and ``hivemind top`` read it).
    The simulated targets hold the swarm's key, so samples and acks go out sealed."""
    from hivemind.swarm.keys import Keys, pick_slot
    from hivemind.swarm.messages import Ack, Command, MemorySample, parse_message
    from hivemind.swarm.redis.bus import wire
    from hivemind.swarm.redis.connection import connect

    keys = Keys(ns)
    pub = connect(url)
    sub = connect(url).pubsub(ignore_subscribe_messages=True)
    sub.subscribe(*[keys.cmd(n) for n in names])
    rng = random.Random(hash(names[0]))
    target = {n: 512 * MB for n in names}
    rss = {n: rng.randint(150, 400) * MB for n in names}
    leaky = {n for i, n in enumerate(names) if i % 10 == 0}
    seq = 0
    commands = acks = 0
    period = 1.0 / hz
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    next_status = time.monotonic()
    last_action = dict.fromkeys(names, "")
    while time.monotonic() < end:
        now = time.monotonic()
        if status_every_s and now >= next_status:
            next_status = now + status_every_s
            pipe = pub.pipeline(transaction=False)
            for n in names:
                ratio = rss[n] / target[n]
                level = ("emergency" if ratio > 1 else "aggressive" if ratio > 0.9
                         else "balanced" if ratio > 0.7 else "conservative")  # fmt: skip
                pipe.hset(keys.target(n), mapping={
                    "name": n, "pid": os.getpid(), "rss_bytes": rss[n],
                    "target_bytes": target[n], "level": level,
                    "last_action": last_action[n], "last_seen": time.time(),
                })  # fmt: skip
                pipe.pexpire(keys.target(n), 5000)
            pipe.execute()
        if now >= next_tick:
            seq += 1
            pipe = pub.pipeline(transaction=False)
            for n in names:
                if n in leaky:
                    rss[n] += rng.randint(0, 3) * MB  # ~30 MB/s
                else:
                    rss[n] = max(100 * MB, rss[n] + rng.randint(-2, 2) * MB)
                s = MemorySample(
                    target=n, pid=os.getpid(), seq=seq, rss_bytes=rss[n], target_bytes=target[n]
                )
                pipe.publish(keys.sample_channel(pick_slot(n)), wire(s, key))
            pipe.execute()
            next_tick += period
            if next_tick < now:
                next_tick = now + period
        msg = sub.get_message(timeout=max(0.0, next_tick - time.monotonic()))
        if msg is None:
            continue
        cmd = parse_message(msg["data"])
        if not isinstance(cmd, Command):
            continue
        commands += 1
        last_action[cmd.target] = "+".join(a.kind.value for a in cmd.actions)
        freed = rss[cmd.target] // 3
        rss[cmd.target] -= freed
        ack = Ack(
            command_id=cmd.id,
            decision_id=cmd.decision_id,
            target=cmd.target,
            ok=True,
            bytes_freed=freed,
            duration_ms=1.0,
            applied_ts=time.time(),
            received_ts=time.time(),
            sample_ts=cmd.sample_ts,
        )
        pub.publish(keys.acks, wire(ack, key))
        acks += 1
    time.sleep(1.0)  # answer what is still in flight
    while (msg := sub.get_message(timeout=0.5)) is not None:
        cmd = parse_message(msg["data"])
        if isinstance(cmd, Command):
            commands += 1
            ack = Ack(command_id=cmd.id, decision_id=cmd.decision_id, target=cmd.target, ok=True)
            pub.publish(keys.acks, wire(ack, key))
            acks += 1
    out.put({"commands": commands, "acks": acks, "samples": seq * len(names)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--hz", type=float, default=20.0)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hivemind.swarm.redis.connection import connect
    from hivemind.swarm.redis.server import EmbeddedRedis
    from tests.reliability.inproc import InProcessSwarm

    tmp = Path(tempfile.mkdtemp(prefix="hm-soak-"))
    server = EmbeddedRedis(tmp / ".hivemind")
    server.start()
    ns = f"soak{uuid.uuid4().hex[:6]}"
    swarm = InProcessSwarm(url=server.url, namespace=ns, secret=os.urandom(32), target_mb=512)
    me = psutil.Process()
    client = connect(server.url)
    keys = swarm.keys
    seconds = args.minutes * 60
    timeline: list[dict[str, Any]] = []
    try:
        swarm.start()
        time.sleep(0.5)
        names = [f"sim-{i:03d}" for i in range(args.targets)]
        share = [names[i :: args.publishers] for i in range(args.publishers)]
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        procs = [
            ctx.Process(
                target=_publisher, args=(server.url, ns, s, args.hz, seconds, out, swarm.secret)
            )
            for s in share
        ]
        for p in procs:
            p.start()
        t0 = time.monotonic()
        while any(p.is_alive() for p in procs):
            time.sleep(min(10.0, max(0.5, seconds / 12)))
            sid = swarm.coordinator.session_id
            d = swarm.coordinator.describe()
            timeline.append(
                {
                    "t_s": round(time.monotonic() - t0),
                    "agents_rss_mb": round(me.memory_info().rss / MB, 1),
                    "redis_used_mb": round(int(client.info("memory")["used_memory"]) / MB, 2),
                    "session_stream_len": int(client.xlen(keys.session_events(sid))),
                    "latency_raw_len": int(client.llen(keys.latency_raw)),
                    "decision_ms_p99": d["decision_ms_p99"],
                    "pending": d["pending"],
                }
            )
            print(json.dumps(timeline[-1]), flush=True)
        results = [out.get(timeout=10) for _ in procs]
        for p in procs:
            p.join(5)
        time.sleep(1.0)
        counters = {k.decode(): int(float(v)) for k, v in client.hgetall(keys.counters).items()}
        d = swarm.coordinator.describe()
        summary = {
            "minutes": args.minutes,
            "targets": args.targets,
            "hz": args.hz,
            "samples_published": sum(r["samples"] for r in results),
            "samples_seen_by_benchmarker": swarm.benchmarker.samples_seen,
            "events": counters.get("events", 0),
            "decisions": counters.get("decisions", 0),
            "commands_published": counters.get("commands", 0),
            "commands_received_by_targets": sum(r["commands"] for r in results),
            "acks_sent": sum(r["acks"] for r in results),
            "acks_recorded_by_coordinator": counters.get("acks", 0),
            "lost_acks": counters.get("commands", 0) - counters.get("acks", 0),
            "decision_ms_p50": d["decision_ms_p50"],
            "decision_ms_p99": d["decision_ms_p99"],
            "bus_errors": int(sum(int(v) for v in client.hgetall(keys.bus_errors).values())),
            "agents_rss_mb_first_last": [
                timeline[0]["agents_rss_mb"],
                timeline[-1]["agents_rss_mb"],
            ],
            "redis_used_mb_first_last": [
                timeline[0]["redis_used_mb"],
                timeline[-1]["redis_used_mb"],
            ],
            "timeline": timeline,
        }
        print(json.dumps({k: v for k, v in summary.items() if k != "timeline"}, indent=2))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        ok = summary["lost_acks"] == 0 and (summary["decision_ms_p99"] or 0) < 50
        return 0 if ok else 1
    finally:
        swarm.stop()
        client.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
