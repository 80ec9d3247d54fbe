"""The report's figures, drawn with Pillow alone: log fd_domain curves in panels with a legend
(quality per epoch and per CPU second, limited data per images seen, tuning methods' best so far
per trial-epoch)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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


def panel(draw, box, curves, xkey, xlabel, font, log_x: bool, names: list[str] = ()) -> None:
    """One log-y panel of fd_domain curves inside box = (x0, y0, x1, y1); a curve's colour is its
    place in `names` (the legend's order, so that panels agree) or else in `curves`."""
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
    for i, (name, curve) in enumerate(curves.items()):
        i = names.index(name) if names else i
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


def _canvas(W: int, H: int, title: str):
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)
    draw.text((W / 2, 10), title, fill=(0, 0, 0), font=font, anchor="ma")
    return img, draw, font


def _save(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def quality(quality: dict, path: Path, title: str) -> None:
    """Two panels (per epoch, per training CPU second), log fd_domain, one line per recipe."""
    curves = {k: v["curve"] for k, v in quality["recipes"].items()}
    W, H = 1200, 540
    img, draw, font = _canvas(W, H, title)
    draw.text((18, 260), "fd_domain", fill=(0, 0, 0), font=font, anchor="lm")
    panel(draw, (120, 40, 560, 420), curves, "epoch", "epoch", font, log_x=False)
    panel(draw, (680, 40, 1120, 420), curves, "cpu_seconds", "training CPU seconds", font, True)
    legend(draw, list(curves), (120, 474), W - 40, font)
    _save(img, path)


def small(small: dict, path: Path, title: str) -> None:
    """One panel a subset size: log fd_domain against thousands of images seen."""
    sizes = sorted(small["sizes"], key=int)
    W, H = 600 * len(sizes), 540
    img, draw, font = _canvas(W, H, title)
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
        box = (x0, 50, x0 + 440, 420)
        panel(draw, box, curves, "kimg", "thousand images seen (log)", font, True, names)
    draw.text((8, 30), "fd_domain", fill=(0, 0, 0), font=font, anchor="lm")
    legend(draw, names, (100, 484), W - 40, font)
    _save(img, path)


def search(search: dict, path: Path) -> None:
    """Each method's best so far against cumulative trial-epochs (first seed of each)."""
    traces = {"every trial to max_t (grid order)": search["exhaustive"]["trace"]}
    traces.update({name: runs[0]["trace"] for name, runs in search["methods"].items()})
    curves = {}
    for name, values in traces.items():
        best, rows = float("inf"), []
        for i, v in enumerate(values, 1):
            best = min(best, v)
            rows.append({"x": i, "fd_domain": best})
        curves[name] = rows
    W, H = 760, 520
    img, draw, font = _canvas(W, H, "best so far against trial-epochs spent")
    panel(draw, (110, 40, 720, 400), curves, "x", "cumulative trial-epochs", font, log_x=True)
    legend(draw, list(curves), (110, 460), W - 20, font)
    _save(img, path)
