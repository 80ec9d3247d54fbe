"""The quality figure and tables from a bench JSON: fd_domain against epoch and against training
CPU seconds for every recipe (log scale), a Markdown table of the curves with their ratios to
the textbook reference of the same run, and every full curve at one CPU budget.

    python bench/report_quality.py bench/results/cpu-....json [--png docs/quality.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import interp_log  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLOURS = [
    (0, 0, 0),
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (23, 190, 207),
]


def _ticks_log(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between lo and hi."""
    out, e = [], math.floor(math.log10(lo))
    while 10**e <= hi * 1.0001:
        out += [m * 10**e for m in (1, 2, 5) if lo <= m * 10**e <= hi]
        e += 1
    return out


def _panel(draw, box, curves, xkey, xlabel, font, log_x: bool) -> None:
    """One log-y panel of fd_domain curves inside box = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    ys = [r["fd_domain"] for c in curves.values() for r in c]
    xs = [r[xkey] for c in curves.values() for r in c]
    ylo, yhi = min(ys) / 1.15, max(ys) * 1.15
    xlo, xhi = (min(xs) / 1.1, max(xs) * 1.1) if log_x else (0, max(xs) * 1.05)

    def px(x):
        t = (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo)) if log_x else x / xhi
        return x0 + t * (x1 - x0)

    def py(y):
        return y1 - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)) * (y1 - y0)

    draw.rectangle(box, outline=(0, 0, 0))
    for t in _ticks_log(ylo, yhi):
        draw.line([(x0, py(t)), (x1, py(t))], fill=(225, 225, 225))
        draw.text((x0 - 6, py(t)), f"{t:g}", fill=(0, 0, 0), font=font, anchor="rm")
    xticks = (
        _ticks_log(xlo, xhi) if log_x else sorted({r[xkey] for c in curves.values() for r in c})
    )
    for t in xticks:
        draw.line([(px(t), y1), (px(t), y1 + 4)], fill=(0, 0, 0))
        draw.text((px(t), y1 + 6), f"{t:g}", fill=(0, 0, 0), font=font, anchor="ma")
    draw.text(((x0 + x1) / 2, y1 + 26), xlabel, fill=(0, 0, 0), font=font, anchor="ma")
    for i, curve in enumerate(curves.values()):
        pts = [(px(r[xkey]), py(r["fd_domain"])) for r in curve]
        colour = COLOURS[i % len(COLOURS)]
        draw.line(pts, fill=colour, width=3 if i == 0 else 2)
        for x, y in pts:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def legend(draw, names: list[str], at: tuple[int, int], right: int, font) -> None:
    """One colour swatch and name per curve, in rows that end before x = right."""
    x, y = at
    for i, name in enumerate(names):
        width = 40 + int(draw.textlength(name, font=font))
        if x + width > right:  # the next legend row
            x, y = at[0], y + 22
        draw.line([(x, y), (x + 24, y)], fill=COLOURS[i % len(COLOURS)], width=3)
        draw.text((x + 30, y), name, fill=(0, 0, 0), font=font, anchor="lm")
        x += width


def plot(quality: dict, path: Path, title: str) -> None:
    """Two panels (per epoch, per training second), log fd_domain, one line per recipe."""
    curves = {k: v["curve"] for k, v in quality["recipes"].items()}
    font = ImageFont.load_default(size=14)
    W, H = 1200, 540
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    draw.text((W / 2, 10), title, fill=(0, 0, 0), font=font, anchor="ma")
    draw.text((18, 260), "fd_domain", fill=(0, 0, 0), font=font, anchor="lm")
    _panel(draw, (120, 40, 560, 420), curves, "epoch", "epoch", font, log_x=False)
    _panel(draw, (680, 40, 1120, 420), curves, "cpu_seconds", "training CPU seconds", font, True)
    legend(draw, list(curves), (120, 474), W - 40, font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def table(quality: dict) -> str:
    """Markdown: one row per recipe and epoch with fd_domain, the rarest class, seconds and the
    ratios to the reference (below 1: better than the textbook DCGAN)."""
    lines = [
        "| recipe | epoch | fd_domain | rarest class | train s (CPU s) | × ref, same epoch "
        "| × ref, same wall s | × ref, same CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rec in quality["recipes"].items():
        ratios = {r["epoch"]: r for r in rec.get("ratios", [])}
        for r in rec["curve"]:
            q = ratios.get(r["epoch"], {})
            lines.append(
                f"| {name} | {r['epoch']} | {r['fd_domain']:.2f} | {r['class_coverage_min']:.1%} "
                f"| {r['seconds']:.0f} ({r['cpu_seconds']:.0f}) "
                f"| {_fmt(q.get('vs_ref_at_epoch'), '.2f')} "
                f"| {_fmt(q.get('vs_ref_at_seconds'), '.2f')} "
                f"| {_fmt(q.get('vs_ref_at_cpu_seconds'), '.2f')} |"
            )
    return "\n".join(lines)


def at_budget(quality: dict) -> tuple[float, list[dict]]:
    """Every full-length curve's fd_domain at one CPU budget: the largest number of CPU seconds
    that all of them reach (log-linear between their epochs, never extrapolated), best first."""
    full = {
        k: v["curve"] for k, v in quality["recipes"].items() if len(v["curve"]) >= quality["epochs"]
    }
    budget = min(c[-1]["cpu_seconds"] for c in full.values())
    rows = []
    for name, curve in full.items():
        xs, ys = [r["cpu_seconds"] for r in curve], [r["fd_domain"] for r in curve]
        fd = interp_log(xs, ys, budget)
        reached = max(r["epoch"] for r in curve if r["cpu_seconds"] <= budget * (1 + 1e-9))
        if fd is not None:
            rows.append({"recipe": name, "fd_domain": fd, "epochs_done": reached})
    return budget, sorted(rows, key=lambda r: r["fd_domain"])


def budget_table(quality: dict) -> str:
    """Markdown: at_budget's rows, with each one's ratio to the best."""
    budget, rows = at_budget(quality)
    lines = [
        f"| recipe (full {quality['epochs']}-epoch curves) | fd_domain at {budget:.0f} CPU s "
        "| whole epochs done by then | × best |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['fd_domain']:.2f} | {r['epochs_done']} "
            f"| {r['fd_domain'] / rows[0]['fd_domain']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="a bench/results/*.json with a quality row")
    p.add_argument("--png", default=str(ROOT / "docs" / "quality.png"))
    args = p.parse_args()
    res = json.loads(Path(args.results).read_text())
    if "quality" not in res:
        print(
            f"{args.results} has no quality row; run bench/run.py --only quality", file=sys.stderr
        )
        return 2
    m = res["machine"]
    where = m["gpu"] or f"{m['cores']} CPU cores"
    plot(res["quality"], Path(args.png), f"fd_domain (10k vs test, log) on {where}")
    print(table(res["quality"]))
    print()
    print(budget_table(res["quality"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
