"""A real multi-node Ray cluster on this machine, every node on 127.0.0.1, token auth.

``ray start --address`` cannot do this: with Ray's cluster switch on it
replaces 127.0.0.1 by the machine's routable address, and with it off
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) it refuses to join a second node.
So a helper process (this file, run as a script) holds a
``ray.cluster_utils.Cluster`` (Ray's own multi-node-on-one-machine tool):
a head and worker nodes, each a separate raylet with its own object store,
workers and agents, joined to one GCS. Each node has its own
``HIVEMIND_NODE`` label in its raylet's environment, so its workers (our
benchmarkers) know which node they are on. The nodes share the helper's
fate: ending the helper ends them. Used by the two-node test and by
``benchmarks/bench_ray.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from hivemind.swarm.lifecycle.ray_head import ray_env

__all__ = ["LocalCluster"]

MB = 2**20


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HIVEMIND_", "RAY_"))}


@dataclass
class LocalCluster:
    """``start()`` the head, ``add_node(label)`` more; ``stop()`` ends them all."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hc", dir="/tmp")))
    address: str = ""
    env: dict[str, str] = field(default_factory=dict)
    raylets: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None

    def driver_env(self) -> dict[str, str]:
        """What a driver (our supervisor) needs to join: loopback switch and the token."""
        return dict(self.env)

    def _ask(self, line: str, timeout_s: float = 240.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"cluster helper exited: {self.proc.wait(timeout_s)}")
        out: dict[str, Any] = json.loads(reply)
        return out

    def start(self, label: str = "node1") -> str:
        self.root.chmod(0o700)
        self.env = ray_env(self.root)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.root)],
            # RAY_TMPDIR: Cluster writes its address to <tmp>/ray/ray_current_cluster, where
            # every ray.init() on the machine would find and join it (default /tmp/ray).
            env={**_base_env(), **self.env, "RAY_TMPDIR": str(self.root)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.root / "cluster.log", "wb"),  # noqa: SIM115
            text=True,
        )
        got = self._ask(f"head {label}")
        self.address = str(got["address"])
        self.raylets[label] = int(got["raylet"])
        return self.address

    def add_node(self, label: str) -> int:
        """Start a worker node labelled ``label``; return its raylet pid."""
        got = self._ask(f"add {label}")
        self.raylets[label] = int(got["raylet"])
        return self.raylets[label]

    def pids(self) -> list[int]:
        """The helper and every process under it (raylets, GCS, agents, workers)."""
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.Error):
            helper = psutil.Process(self.proc.pid)
            return [helper.pid, *(p.pid for p in helper.children(recursive=True))]
        return []

    def stop(self) -> None:
        """Shut the cluster down (the helper ends its nodes), then kill what is left."""
        pids = self.pids()
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self._ask("quit", timeout_s=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        procs = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _serve(root: Path) -> None:
    """The helper: read commands on stdin, answer one JSON line each."""
    from ray.cluster_utils import Cluster

    temp = root / "ray"
    temp.mkdir(mode=0o700, exist_ok=True)
    cluster: Cluster | None = None

    def node_args(label: str) -> dict[str, Any]:
        return {
            "num_cpus": 1,
            "object_store_memory": 75 * MB,
            "env_vars": {"HIVEMIND_NODE": label},
        }

    for line in sys.stdin:
        cmd, _, label = line.strip().partition(" ")
        if cmd == "head":
            args = {**node_args(label), "include_dashboard": False, "temp_dir": str(temp)}
            cluster = Cluster(initialize_head=True, head_node_args=args)
            node = cluster.head_node
            reply = {"address": cluster.address, "raylet": _raylet_pid(node)}
        elif cmd == "add" and cluster is not None:
            node = cluster.add_node(wait=True, **node_args(label))
            reply = {"raylet": _raylet_pid(node)}
        elif cmd == "quit":
            if cluster is not None:
                cluster.shutdown()
            print(json.dumps({"bye": True}), flush=True)
            return
        else:
            reply = {"error": line.strip()}
        print(json.dumps(reply), flush=True)


def _raylet_pid(node: Any) -> int:
    return int(node.all_processes["raylet"][0].process.pid)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
