"""BENCHMARKS.md and README's figures are what the benchmarks wrote, never edited by hand."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import run_all

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(?:ms|MB|GB|%|s)\b")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def test_benchmarks_md_is_generated_from_the_results() -> None:
    assert (ROOT / "BENCHMARKS.md").read_text() == run_all.render(), (
        "BENCHMARKS.md differs from benchmarks/results: run "
        "`.venv/bin/python -m benchmarks.run_all --no-run`"
    )


def test_readme_figures_block_is_generated_from_the_results() -> None:
    readme = (ROOT / "README.md").read_text()
    assert run_all.FIGURES_START in readme and run_all.FIGURES_END in readme
    assert readme == run_all.readme_with_figures(readme), "README's figures block is stale"
    assert run_all.headlines(), "no results file has a Headline line"


def test_every_link_in_benchmarks_md_points_at_a_file_in_the_repo() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text()
    for link in re.findall(r"\]\(([^)#:\s]+)\)", text):
        assert (ROOT / link).exists(), link


def _matches(figure: str, measured: set[float]) -> bool:
    """``figure`` as README writes it equals a measured number, or that number rounded."""
    text = figure.replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    value = float(text)
    return any(round(m, decimals) == value for m in measured)


def test_figures_quoted_in_readme_prose_were_measured() -> None:
    """Each figure in a README paragraph that cites a benchmark appears in BENCHMARKS.md."""
    measured = {float(n.replace(",", "")) for n in NUMBER.findall(run_all.render())}
    readme = (ROOT / "README.md").read_text()
    unmeasured = []
    for para in re.split(r"\n\s*\n", readme):
        if "benchmarks" not in para and "BENCHMARKS" not in para:
            continue
        for m in FIGURE.finditer(para):
            if not _matches(m.group(1), measured):
                unmeasured.append(m.group(0))
    assert unmeasured == []


def test_the_figure_check_can_fail() -> None:
    assert _matches("118", {118.4})
    assert not _matches("110", {145.0, 1.0})
