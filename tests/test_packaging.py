"""The four source folders install as hivemind.* from both an editable install and a wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "hivemind",
    "hivemind.swarm",
    "hivemind.agents",
    "hivemind.coordinator",
    "hivemind.hooks",
]
PROBE = (
    "import importlib, json; "
    f"print(json.dumps({{p: importlib.import_module(p).__file__ for p in {PACKAGES!r}}}))"
)


def _import_from(cwd: Path, pythonpath: str | None = None) -> dict[str, str]:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


def test_every_subpackage_is_listed_in_pyproject() -> None:
    """A folder with an ``__init__.py`` missing from pyproject would be left out of the wheel."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {"hivemind"}
    for folder in ("swarm", "agents", "coordinator", "hooks"):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join(("hivemind", folder, *rel.parts)))
    assert found == listed


def test_editable_install_imports_from_outside_the_repo(tmp_path: Path) -> None:
    files = _import_from(tmp_path)
    assert files["hivemind.swarm"] == str(ROOT / "swarm" / "__init__.py")
    assert files["hivemind.hooks"] == str(ROOT / "hooks" / "__init__.py")


@pytest.mark.slow
def test_built_wheel_imports_from_outside_the_repo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("hivemind_swarm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hivemind/coordinator/sessions/append.lua" in names
    assert "hivemind/swarm/cli/app.py" in names and "hivemind/agents/__init__.py" in names
    assert not any(n.startswith(("swarm/", "tests/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    files = _import_from(tmp_path, str(target))
    for pkg in PACKAGES:
        assert files[pkg].startswith(str(target)), (pkg, files[pkg])
    entry = (target / "bin" / "hivemind").read_text()
    assert "hivemind.entry" in entry
