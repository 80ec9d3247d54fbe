"""The limited-data figure and tables from a bench JSON with a `small` row: fd_domain (10k
generated vs the 10k test images, log) against images seen for every recipe on each subset, a
Markdown summary (best and last fd_domain, against the textbook DCGAN's best on the same
subset, memorisation, utility) and the curves.

    python bench/report_small.py bench/results/cpu-....json [--png docs/small.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_quality import _fmt, _panel, legend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plot(small: dict, path: Path, title: str) -> None:
    """One panel a subset size: log fd_domain against thousands of images seen."""
    sizes = sorted(small["sizes"], key=int)
    font = ImageFont.load_default(size=14)
    W, H = 600 * len(sizes), 540
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    draw.text((W / 2, 10), title, fill=(0, 0, 0), font=font, anchor="ma")
    names: list[str] = []
    for i, size in enumerate(sizes):
        recipes = small["sizes"][size]["recipes"]
        names += [n for n in recipes if n not in names]
        curves = {
            n: [{**r, "kimg": r["images_seen"] / 1000} for r in recipes[n]["curve"]]
            for n in names
            if n in recipes
        }
        x0 = 600 * i + 100
        draw.text(
            (x0 + 220, 30), f"{int(size):,} training images", fill=(0, 0, 0), font=font, anchor="ma"
        )
        _panel(
            draw, (x0, 50, x0 + 440, 420), curves, "kimg", "thousand images seen (log)", font, True
        )
    draw.text((8, 30), "fd_domain", fill=(0, 0, 0), font=font, anchor="lm")
    legend(draw, names, (100, 484), W - 40, font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def summary_table(small: dict) -> str:
    """Markdown: one row per subset and recipe."""
    lines = [
        "| images | recipe | epochs done | best fd_domain (epoch) | × textbook's best | last "
        "fd_domain | last / best | memorisation, last | near-copies, last | classifier "
        "accuracy: real / real + generated / generated (best checkpoint) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sorted(small["sizes"], key=int):
        entry = small["sizes"][size]
        for name, rec in entry["recipes"].items():
            s, curve = rec["summary"], rec["curve"]
            best = next(r for r in curve if r["epoch"] == s["best_epoch"])
            util = "–"
            if "utility_real" in best:
                util = " / ".join(
                    f"{best[f'utility_{k}']:.1%} ± {best[f'utility_{k}_std']:.1%}"
                    for k in ("real", "real_plus_generated", "generated_only")
                )
            lines.append(
                f"| {int(size):,} | {name} | {curve[-1]['epoch']} of {entry['epochs']} "
                f"| {s['best_fd_domain']:.2f} ({s['best_epoch']}) "
                f"| {_fmt(s.get('best_vs_textbook_best'), '.2f')} "
                f"| {s['last_fd_domain']:.2f} | {s['last_over_best']:.2f} "
                f"| {s['last_memorisation_ratio']:.2f} | {s['last_near_copies']:.1%} | {util} |"
            )
    return "\n".join(lines)


def curve_table(small: dict) -> str:
    """Markdown: every scored checkpoint."""
    lines = [
        "| images | recipe | epoch | fd_domain | rarest class | memorisation | near-copies "
        "| train s (CPU s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted(small["sizes"], key=int):
        for name, rec in small["sizes"][size]["recipes"].items():
            for r in rec["curve"]:
                lines.append(
                    f"| {int(size):,} | {name} | {r['epoch']} | {r['fd_domain']:.2f} "
                    f"| {r['class_coverage_min']:.1%} | {r['memorisation_ratio']:.2f} "
                    f"| {r['near_copies']:.1%} | {r['seconds']:.0f} ({r['cpu_seconds']:.0f}) |"
                )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="a bench/results/*.json with a small row")
    p.add_argument("--png", default=str(ROOT / "docs" / "small.png"))
    p.add_argument("--curves", action="store_true", help="also every checkpoint's scores")
    args = p.parse_args()
    res = json.loads(Path(args.results).read_text())
    if not res.get("small", {}).get("sizes"):
        print(f"{args.results} has no small row; run bench/run.py --only small", file=sys.stderr)
        return 2
    m = res["machine"]
    where = m["gpu"] or f"{m['cores']} CPU cores"
    plot(res["small"], Path(args.png), f"fd_domain (10k vs the test images, log) on {where}")
    print(summary_table(res["small"]))
    if args.curves:
        print()
        print(curve_table(res["small"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
