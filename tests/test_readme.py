"""The README's library example runs as written (in a child, so its GC changes stay there)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_seed_api_example_runs() -> None:
    block = next(b for b in _python_blocks() if "run_hive_mind_memory_benchmark" in b)
    proc = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "the example prints its reports"


def test_readme_references_only_files_in_the_repo() -> None:
    text = README.read_text()
    assert "../shared" not in text
    root = README.parent
    for link in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (root / link).exists(), link


def test_hook_lines_match_the_report() -> None:
    seed = Path(__file__).resolve().parent.parent / "docs" / "seed-report.md"
    text = README.read_text()
    lines = re.findall(r"npx claude-flow@alpha hooks (\S+)", seed.read_text())
    assert len(lines) == 3
    for line in lines:
        assert f"hivemind hooks {line}" in text
