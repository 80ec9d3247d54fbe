"""docs/benchmarks.md and its plots are written from the committed JSON by `python -m bench report`:
regenerated here, they must equal the committed files byte for byte."""

from pathlib import Path

import pytest

from bench.report import SOURCES, write
from bench.report.markdown import fmt, table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_page_and_plots_equal_what_the_json_writes(tmp_path):
    page = write(tmp_path)
    assert page.read_text() == (DOCS / "benchmarks.md").read_text(), (
        "docs/benchmarks.md is stale: run python -m bench report"
    )
    for name in ("quality.png", "small.png", "search.png"):
        assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes(), name


def test_every_section_names_its_run():
    text = (DOCS / "benchmarks.md").read_text()
    for key in (
        "quality",
        "quality_fused",
        "small",
        "small_anneal",
        "small_r1",
        "small_plus_r1",
        "small_wide",
        "augment",
        "augment_wide",
        "quick",
        "search",
        "mfu",
        "growth",
    ):
        assert SOURCES[key] in text, key


@pytest.mark.parametrize(("value", "cell"), [(None, "–"), (0.256, "0.26"), (3, "3.00")])
def test_one_cell_format_and_table_writer(value, cell):
    assert fmt(value) == cell
    lines = table(["", "a"], "lr", [["x", fmt(value)]]).splitlines()
    assert lines == ["| | a |", "|---|---:|", f"| x | {cell} |"]
