"""The layers of docs/architecture.md, checked: imports point down only.

Each source module is put in a layer by its folder; a module may import
from its own layer and the layers below it, never above. Inside the
product layer the agents, the coordinator and the hooks do not import each
other's internals; the hooks may use the session storage they write into.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("swarm", "agents", "coordinator", "hooks")

# (module prefix, layer rank); the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "hivemind.swarm": 0,  # base: vocab, env, settings, keys, messages, errors, signing, paths
    "hivemind.swarm.redis": 0,
    "hivemind.swarm.observe": 1,
    "hivemind.agents": 2,  # the seed's optimizer library
    "hivemind.swarm.target": 3,  # what runs inside a guarded process
    "hivemind.swarm.agent": 3,  # the actor base class and facades
    "hivemind.agents.actors": 4,
    "hivemind.coordinator": 4,
    "hivemind.hooks": 4,
    "hivemind.swarm.lifecycle": 5,
    "hivemind.swarm.bench": 5,  # bench and demo start swarms and guarded processes
    "hivemind.swarm.cli": 5,
    "hivemind": 5,  # the facade package and the entry point
}
# Within the product layer: who may import whom.
PRODUCT_ALLOWED: dict[str, tuple[str, ...]] = {
    # The optimizers report their commands' outcomes (refused, timeout) into the session.
    "hivemind.agents.actors": ("hivemind.coordinator.sessions",),
    "hivemind.coordinator": (),
    "hivemind.hooks": ("hivemind.coordinator.sessions",),
}


def _owner(module: str) -> str:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join(("hivemind", folder, *parts))] = path
    return found


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("hivemind.")}


def violations() -> list[str]:
    bad = []
    for module, path in sorted(_modules().items()):
        owner = _owner(module)
        for imported in sorted(_imports(path)):
            target = _owner(imported)
            if LAYERS[target] > LAYERS[owner]:
                bad.append(
                    f"{module} (layer {LAYERS[owner]}) imports {imported} (layer {LAYERS[target]})"
                )
            elif (
                target in PRODUCT_ALLOWED
                and owner in PRODUCT_ALLOWED
                and target != owner
                and not any(imported.startswith(p) for p in PRODUCT_ALLOWED[owner])
            ):
                bad.append(f"{module} imports {imported}: product parts stay independent")
    return bad


def test_imports_point_down_only() -> None:
    assert violations() == []


def test_the_check_sees_a_violation() -> None:
    assert _owner("hivemind.swarm.redis.bus") == "hivemind.swarm.redis"
    assert LAYERS[_owner("hivemind.swarm.cli.app")] > LAYERS[_owner("hivemind.swarm.keys")]
    assert _imports(ROOT / "swarm" / "cli" / "app.py"), "the parser finds the CLI's imports"
