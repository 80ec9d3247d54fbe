"""`python -m bench report`: docs/benchmarks.md and its plots, written from the committed JSON under
bench/results/, never by hand. Each section reads the runs SOURCES names for it; the prose is the
sections' fixed text, the tables and the numbers in it come from those runs.

    python -m bench report [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import RESULTS, ROOT
from bench.report import augment, performance, quality, quick, search, small

# the run each section (or each row of the performance table) is written from, by file name
SOURCES = {
    "quality": "cpu-20261205-035436.json",  # the quality curves, 10 epochs
    "quality_fused": "cpu-20261205-121822.json",  # fmnist rerun to epoch 2 after the fused blocks
    "small": "cpu-20261206-160517.json",  # limited data, 1M images seen
    "small_anneal": "cpu-20261206-172452.json",  # small-anneal on both subsets
    "small_r1": "cpu-20261206-183745.json",  # small-r1 on 1,000 images
    "small_plus_r1": "cpu-20261206-232615.json",  # small-plus-r1 on both, to the end
    "small_wide": "cpu-20261207-051410.json",  # small-wide (width 32) on 1,000 images
    "augment": "cpu-20261207-025758.json",  # small-plus-r1 images mixed into the real subsets
    "augment_wide": "cpu-20261207-063627.json",  # small-wide's images, 1,000 real ones
    "quick": "cpu-20261201-191617.json",  # screen, quick and asha rows
    "search": "cpu-20261205-084237.json",  # tuning methods against the exhaustive search
    "train": "cpu-20261205-103732.json",  # fused blocks; the Intel host of the MFU rows
    "train_before_fused": "cpu-20261205-071249.json",
    "train_amd": "cpu-20261205-041908.json",
    "train_w16": "cpu-20261205-012708.json",  # the former width-16 preset
    "train_narrow": "cpu-20261125-184219.json",  # the former quick.yaml's narrow DCGAN
    "fid_5000": "cpu-20261205-095711.json",
    "fid_10000": "cpu-20261205-121712.json",
    "fid_500": "cpu-20261205-090431.json",
    "fid_500_5000": "cpu-20261205-062911.json",
    "frechet": "cpu-20261201-232230.json",
    "packing": "cpu-20261125-184219.json",
    "mfu": "cpu-20261205-103732.json",
    "growth": "cpu-20261205-123224.json",
}

# the augment runs, one table: each run's columns against its own real-only classifier
AUGMENT = ("augment", "augment_wide")

HEAD = """\
# Benchmarks

Written by `python -m bench report` from the JSON runs under `bench/results/` (each section names
its run); edit `bench/report/`, not this page. `python -m bench ROW ...` measures rows anew.

## Recipes

"""


# the techniques' config keys: reference text, not measured (kept as Markdown: long table rows)
KEYS = Path(__file__).with_name("recipe_keys.md")


def load(results: Path = RESULTS) -> dict[str, dict]:
    """Every run SOURCES names, by its key."""
    return {k: json.loads((results / name).read_text()) for k, name in SOURCES.items()}


def page(out: Path, results: Path = RESULTS) -> str:
    """The page's Markdown; the plots are drawn into out."""
    res = load(results)
    search_section = search.section(res["search"], SOURCES["search"], out)
    return "\n".join(
        [
            HEAD + KEYS.read_text(),
            quality.section(
                res["quality"],
                SOURCES["quality"],
                res["quality_fused"],
                SOURCES["quality_fused"],
                out,
            ),
            small.section(
                res["small"],
                SOURCES["small"],
                [
                    (res[k], SOURCES[k])
                    for k in ("small_anneal", "small_r1", "small_plus_r1", "small_wide")
                ],
                out,
            ),
            augment.section([(res[k], SOURCES[k]) for k in AUGMENT]),
            quick.section(res["quick"], SOURCES["quick"]),
            performance.section(res, SOURCES, search_section),
        ]
    )


def write(out: Path, results: Path = RESULTS) -> Path:
    """docs/benchmarks.md and its plots, into out."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmarks.md"
    path.write_text(page(out, results))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench report", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs"), help="where the page and plots go")
    args = p.parse_args(argv)
    print(f"wrote {write(Path(args.out))}")
    return 0
