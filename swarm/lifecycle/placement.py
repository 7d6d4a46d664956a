"""Where the benchmarkers run, and which samples each one reads.

The sample stream is cut into :data:`~hivemind.swarm.keys.SAMPLE_SLOTS`
channels (``hm:{ns}:samples:{slot}``). A guarded process publishes on one
slot: a slot owned by a benchmarker on its own node when one runs there
(``hm:{ns}:sample_nodes`` maps a node label to its slots), else the slot its
name hashes to. Each benchmarker subscribes to its own slots only
(``hm:{ns}:bench_slots`` maps a benchmarker to its slots), so no single
process reads every sample, and samples stay on the node that produced them.

:func:`assign_slots` is the pure rule; :class:`BenchmarkerPlacement` keeps
one benchmarker (or ``per_node``) on every alive Ray node, pinned there with
node affinity, and rewrites the two hashes when a node joins or leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from hivemind.swarm.agent.base import AgentConfig, node_label
from hivemind.swarm.agent.facade import ActorFacade
from hivemind.swarm.keys import SAMPLE_SLOTS, Keys

__all__ = ["BenchmarkerPlacement", "Shard", "assign_slots", "node_label"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shard:
    """One benchmarker: its actor name, the Ray node it is pinned to, its node label."""

    name: str
    ray_node: str
    label: str


def assign_slots(shards: list[Shard]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Deal the slots out: returns (benchmarker name -> slots, node label -> slots).

    Benchmarker ``i`` of ``n`` (sorted by name) gets every slot ``s`` with
    ``s % n == i``: disjoint, covering every slot, as even as 16 allows.
    """
    ordered = sorted(shards, key=lambda s: s.name)
    if not ordered:
        return {}, {}
    per_bench: dict[str, list[int]] = {s.name: [] for s in ordered}
    per_node: dict[str, list[int]] = {}
    for slot in range(SAMPLE_SLOTS):
        shard = ordered[slot % len(ordered)]
        per_bench[shard.name].append(slot)
        per_node.setdefault(shard.label, []).append(slot)
    return per_bench, per_node


def _csv(slots: list[int]) -> str:
    return ",".join(str(s) for s in slots)


@dataclass
class BenchmarkerPlacement:
    """Keeps ``per_node`` benchmarkers on every alive Ray node (node affinity)."""

    facade: type[ActorFacade]
    config: AgentConfig
    client: redis.Redis
    per_node: int = 1
    alive_nodes: Callable[[], list[str]] | None = None
    agents: dict[str, ActorFacade] = field(default_factory=dict)
    shards: dict[str, Shard] = field(default_factory=dict)

    @property
    def keys(self) -> Keys:
        return Keys(self.config.namespace)

    def _nodes(self) -> list[str]:
        if self.alive_nodes is not None:
            return self.alive_nodes()
        import ray

        nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        return sorted(str(n["NodeID"]) for n in nodes if n.get("Alive"))

    def _name(self, index: int) -> str:
        base = self.facade.actor_name(self.config.namespace)
        return base if index == 0 else f"{base}.{index}"

    def reconcile(self, timeout_s: float = 120.0) -> bool:
        """Start benchmarkers on nodes that have none, forget those on dead nodes.

        Returns True when the set changed (the slot hashes were rewritten).
        """
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = self._nodes()
        changed = False
        for name in [n for n, s in self.shards.items() if s.ray_node not in nodes]:
            log.info("benchmarker %s: its node left", name)
            self.shards.pop(name)
            self.agents.pop(name, None)
            changed = True
        started: list[ActorFacade] = []
        planned = dict(self.shards)
        for node in nodes:
            have = sum(1 for s in self.shards.values() if s.ray_node == node)
            for _ in range(self.per_node - have):
                index = 0
                while self._name(index) in self.shards or self._name(index) in self.agents:
                    index += 1
                name = self._name(index)
                strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
                agent = self.facade.start(self.config, name=name, scheduling_strategy=strategy)
                self.agents[name] = agent
                self.shards[name] = planned[name] = Shard(name, node, "")
                started.append(agent)
        if started:
            self.publish(planned)  # the new ones read only their own slots from the start
        for agent in started:
            info = agent.ping(timeout_s=timeout_s)
            self.shards[agent.name] = Shard(agent.name, str(info.get("ray_node", "")), info["node"])
            changed = True
        if changed:
            self.publish()
        return changed

    def recreate(self, name: str) -> ActorFacade:
        """Start benchmarker ``name`` again, pinned to the node it was on."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.shards[name].ray_node
        strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False) if node else None
        agent = self.facade.start(self.config, name=name, scheduling_strategy=strategy)
        self.agents[name] = agent
        return agent

    def publish(self, shards: dict[str, Shard] | None = None) -> None:
        """Write which benchmarker reads which slots, and each node's slots."""
        chosen = self.shards if shards is None else shards
        per_bench, per_node = assign_slots(list(chosen.values()))
        per_node.pop("", None)  # not yet known (not pinged): no node claims those slots
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.bench_slots, self.keys.sample_nodes)
        if per_bench:
            pipe.hset(self.keys.bench_slots, mapping={k: _csv(v) for k, v in per_bench.items()})
        if per_node:
            pipe.hset(self.keys.sample_nodes, mapping={k: _csv(v) for k, v in per_node.items()})
        pipe.execute()

    def stop(self) -> None:
        """Stop every benchmarker this placement started."""
        for agent in self.agents.values():
            try:
                agent.stop()
            except Exception as exc:  # keep stopping the rest
                log.warning("stopping %s failed: %s", agent.name, exc)
        self.agents.clear()
        self.shards.clear()

    def describe(self) -> list[dict[str, Any]]:
        """Each benchmarker: name, Ray node, node label, slots."""
        per_bench, _ = assign_slots(list(self.shards.values()))
        return [
            {"name": s.name, "ray_node": s.ray_node, "node": s.label, "slots": per_bench[s.name]}
            for s in self.shards.values()
        ]
