"""The tuning-efficiency table and plot from a bench JSON's `search` row: for each method the
trial-epochs it used, its best, the trial-epochs it needed to come within 5% of the exhaustive
best, and its best within a third of the exhaustive budget; the plot draws each method's best so
far against cumulative trial-epochs (first seed of each).

    python bench/report_search.py bench/results/cpu-....json [--png docs/search.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_quality import _panel, legend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _mid(values: list) -> str:
    """Median (and range) over seeds; '-' where a run never came within 5%."""
    if any(v is None for v in values):
        reached = [v for v in values if v is not None]
        return f"{len(reached)}/{len(values)} seeds" + (
            f", median {statistics.median(reached):g}" if reached else ""
        )
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def table(search: dict) -> str:
    full = search["exhaustive"]
    budget = search["budget_trial_epochs"]
    lines = [
        f"| method | seeds | trial-epochs | best {search['metric'].split(',')[0]} | "
        f"trial-epochs to within 5% of the exhaustive best | best within {budget} "
        "trial-epochs |",
        "|---|---:|---:|---:|---:|---:|",
        # the reference: its cost is every trial-epoch; when it passes 5% depends only on the
        # order it happens to train the grid in
        f"| every trial to max_t | - | {full['trial_epochs']} | {full['best']:.4g} | "
        f"{full['trial_epochs']} (all) | order-dependent |",
    ]
    for name, runs in search["methods"].items():
        cols = ("trial_epochs", "best", "epochs_to_within_5pct", "best_within_budget")
        cells = " | ".join(_mid([r[c] for r in runs]) for c in cols)
        lines.append(f"| {name} | {len(runs)} | {cells} |")
    return "\n".join(lines)


def plot(search: dict, path: Path) -> None:
    traces = {"every trial to max_t (grid order)": search["exhaustive"]["trace"]}
    traces.update({name: runs[0]["trace"] for name, runs in search["methods"].items()})
    curves = {}
    for name, values in traces.items():
        best, rows = float("inf"), []
        for i, v in enumerate(values, 1):
            best = min(best, v)
            rows.append({"x": i, "fd_domain": best})
        curves[name] = rows
    font = ImageFont.load_default(size=14)
    W, H = 760, 520
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    title = "best so far against trial-epochs spent"
    draw.text((W / 2, 10), title, fill=(0, 0, 0), font=font, anchor="ma")
    _panel(draw, (110, 40, 720, 400), curves, "x", "cumulative trial-epochs", font, log_x=True)
    legend(draw, list(curves), (110, 460), W - 20, font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results")
    p.add_argument("--png", default=str(ROOT / "docs" / "search.png"))
    a = p.parse_args()
    data = json.loads(Path(a.results).read_text())
    search = data.get("search", data)
    print(table(search))
    plot(search, Path(a.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
