"""Run mypy --strict over the installed layout.

The source folders (swarm/, agents/, ...) install as hivemind.swarm,
hivemind.agents, ...; mypy cannot follow setuptools' package-dir mapping,
so this builds a symlink tree .lint/hivemind/{swarm,agents,...} and checks
the package ``hivemind`` there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"swarm": "swarm", "agents": "agents", "coordinator": "coordinator", "hooks": "hooks"}


def main() -> int:
    tree = ROOT / ".lint" / str(os.getpid())
    shutil.rmtree(tree, ignore_errors=True)
    pkg = tree / "hivemind"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "hivemind").iterdir():
        if entry.suffix in (".py", ".typed"):
            os.symlink(entry, pkg / entry.name)
    for sub, folder in MAPPING.items():
        os.symlink(ROOT / folder, pkg / sub)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "-p",
        "hivemind",
    ]
    return subprocess.call(cmd, cwd=tree, env={**os.environ, "MYPYPATH": str(tree)})


if __name__ == "__main__":
    sys.exit(main())
