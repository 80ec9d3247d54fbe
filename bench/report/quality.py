"""The quality section: each recipe's fd_domain per epoch and per CPU second against the textbook
DCGAN of the same run (the `quality` row), its tables, plot and fixed text."""

from __future__ import annotations

from pathlib import Path

from bench.common import interp_log
from bench.report import plots
from bench.report.markdown import fmt, table

INTRO = """\
`python -m bench quality` (part of `make bench`) trains the textbook DCGAN of
`bench/textbook_dcgan.py` (pytorch/examples style: ConvT G 256-128, BatchNorm D 64-128, BCE,
Adam 2e-4 / 0.5, batch 128, a DataLoader) and each Fashion-MNIST preset (`--recipes`, or
`L=preset --set L:key=value` for a variant; `--set L:epochs=N` gives one curve fewer epochs) on
the full 60k training split with seed 0. After every epoch it scores the sampling G (G_ema; the
textbook's G in eval mode) by fd_domain, 10k generated against the 10k test images, with the
rarest class's share; seconds count training only. CPU: epochs 1-5 (`--quick` 1-2,
`--epochs N` to extend), GPU: 1-30. On a CPU the curves train side by side, one per core
(`--jobs`), so every curve, the reference's included, is timed on the same share of the
machine. Checkpoints under `runs/bench-quality/` let an interrupted bench resume; CPU training
is deterministic (a second, independent run of `w16` repeated its fd_domain to the last digit
at epochs 1-4), so a resumed curve is the same curve. `python -m bench report`
draws the plot and these tables from the JSON (`bench/results/{source}`, {cores} CPU
cores, one curve per core, one thread each; × ref below 1 is better than the textbook; the
equal-seconds columns interpolate the reference's curve and never extrapolate).
"""

RECIPES = """\
The recipes: `fmnist` is the preset (width 24, class-conditional, LR decay x0.85 per epoch). The
others are the preset with `--set`: `w16` is the former default (`width=16 conditional=false
lr_decay=1.0`: unconditional, constant learning rates); `w16-decay` keeps the decay
(`width=16 conditional=false`); `w16-cond` keeps the labels (`width=16 lr_decay=1.0`);
`w16-cond-decay` keeps both (`width=16`); and three variants of `w16` to epoch 5: `w16-ema` a
longer EMA (`ema_decay=0.9999 ema_rampup=0.1`), `w16-da` DiffAugment
(`diffaug=translation,cutout`), `w16-ema-lr` the longer EMA at twice the learning rates
(`lr_g=lr_d=4e-4`).
"""

BUDGET = """\
Per CPU second, every full {epochs}-epoch curve at the largest budget all of them reach (log-linear
between epochs, never extrapolated):
"""

NOTES = """\
What the curves say, on this CPU:
- `fmnist` is {ep_lo}-{ep_hi}x the textbook DCGAN's fd_domain at every epoch from 1 to
  {epochs}: {f3} against {t3} at epoch 3, {f5} against {t5} at epoch 5, {f10} against {t10}
  at epoch {epochs} (its best, {fbest}, at epoch {fbest_epoch}). An epoch of it costs {f_cpu}
  CPU s on one core against the textbook's {t_cpu}, and per CPU second it is still
  {cpu_lo}-{cpu_hi}x the textbook. At the budget all full curves reach ({budget} CPU s) it is
  at {b_fmnist}, the width-16 recipes at {b_w16_lo}-{b_w16_hi}, the textbook at {b_textbook}.
- What made it: the labels, the width and the decay, each measured against the others in this
  run. The labels (`w16-cond` against `w16`): 3.15 against 5.67 at epoch 10, better at 7 of 10
  epochs. The decay: alone (`w16-decay`) it is worse than `w16` at epochs 2-9 and only a little
  better at 10 (5.23 against 5.67); with the labels (`w16-cond-decay` against `w16-cond`) it
  takes the swings out of the curve (4.47, 4.27, 4.10, 4.02 at epochs 5-8 where `w16-cond`
  moves 6.01, 4.44, 4.19, 5.23) and ends at the same level (3.46 against 3.15). The width
  (`fmnist` against `w16-cond-decay`): 1.7x the CPU time per epoch for 0.48-0.68x the
  fd_domain at every epoch, and the better curve per CPU second (2.92 at 1474 CPU s,
  where `w16-cond-decay` interpolates to about 3.7).
- The former default `w16` stops improving after epoch 6 (4.26, then 5.06-5.81), while the
  textbook keeps falling; `fmnist` keeps improving to epoch 8 (1.94) and holds there (2.09,
  2.16) as its learning rates fall to 0.2x.
- None of the three older variants beats `w16` at epoch 5. The longer EMA is worse at every
  epoch (6.64 against 5.60 at epoch 5). DiffAugment is 1.6-3.0x worse at every epoch (16.58 at
  epoch 5, no better than the textbook's 15.10): with 60k real images D is not short of data in
  5 epochs, and the augmentation slows what it learns; `fmnist-long` keeps it for the reason it
  was designed for (over 1000 epochs D can memorise the training set), not measured here. Twice
  the learning rates with the longer EMA lead at epochs 1 and 3 and trail at 2, 4 and 5.
- The rarest class is 8.0-8.1% of `fmnist`'s samples at epochs 4, 5 and 9 and 5.1-7.9% at the
  others (textbook 2.5-8.1%). It is the shirt: a conditional G draws every class equally often,
  but the classifier calls some of its shirts T-shirts or pullovers, the classes it confuses
  shirts with. The 10k real test images score 9.2% shirts under the same classifier, the
  ceiling of this measure.
- How the curves were trained: `w16`, `w16-ema`, `w16-da`, `w16-ema-lr` and the textbook two at
  a time in an earlier invocation of the bench (`cpu-20261205-012300.json`, under their former
  names), `w16-decay`, `w16-cond-decay`, `w16-cond` and `fmnist`'s epochs 1-5 two at a time
  today, `fmnist`'s epochs 6-10 resumed alone with the other core running the test suite (its
  CPU seconds per epoch stayed at 297-307); the JSON above assembles them from their
  checkpoints with the one textbook reference. One seed per recipe: epoch to epoch a curve moves
  by up to 1.4x, which is why a run keeps its best checkpoint.
- These curves were trained before the residual blocks computed each upsampling and pooling
  inside its conv (see [Performance](#performance): the same model, 38% fewer FLOPs a step).
  Rerun beside the textbook after that change, to epoch 2 (`{fused_source}`):
  `fmnist` {u1} and {u2} at epochs 1 and 2 ({r1}x and {r2}x the textbook, whose {ut1} and
  {ut2} repeated to the last digit). The function is the same to float rounding, not to the
  bit, and the rounding differences grow over training: the curve drifts from the one above
  ({f1} and {f2}). Two epochs of one seed show no change in quality either way.
- Earlier runs (`bench/results/cpu-20261202-003626.json`, `cpu-20261201-223820.json`, with the
  former sampler and curves trained one after another on both cores) measured the seeds'
  presets to epoch 5 or 2 beside their own textbook reference: `seed001-v2` (a width-64 DCGAN at
  lr 2e-3 / 1e-3, BCE, batch 64) leads at epochs 1-2 (0.23x and 0.38x the textbook) and then
  stalls (10.13 at epoch 5); `seed001-v1` and `seed002-dcgan` were worse than the textbook
  (1.84x and 3.30x at epoch 2).
- Not measured on a CPU: `fmnist-long` (an epoch of its width-64 pair is hours here), R1, a
  width above 24, and the GPU curve to epoch 30 (`bench/gpu.sh` is the prepared GPU run).
"""


def curve_table(quality: dict) -> str:
    """One row per recipe and epoch with fd_domain, the rarest class, seconds and the ratios to
    the reference (below 1: better than the textbook DCGAN)."""
    rows = []
    for name, rec in quality["recipes"].items():
        ratios = {r["epoch"]: r for r in rec.get("ratios", [])}
        for r in rec["curve"]:
            q = ratios.get(r["epoch"], {})
            rows.append(
                [
                    name,
                    r["epoch"],
                    f"{r['fd_domain']:.2f}",
                    f"{r['class_coverage_min']:.1%}",
                    f"{r['seconds']:.0f} ({r['cpu_seconds']:.0f})",
                    *(fmt(q.get(f"vs_ref_at_{k}")) for k in ("epoch", "seconds", "cpu_seconds")),
                ]
            )
    header = ["recipe", "epoch", "fd_domain", "rarest class", "train s (CPU s)"]
    header += ["× ref, same epoch", "× ref, same wall s", "× ref, same CPU s"]
    return table(header, "lrrrrrrr", rows)


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
    """at_budget's rows, with each one's ratio to the best."""
    budget, rows = at_budget(quality)
    header = [
        f"recipe (full {quality['epochs']}-epoch curves)",
        f"fd_domain at {budget:.0f} CPU s",
        "whole epochs done by then",
        "× best",
    ]
    best = rows[0]["fd_domain"]
    cells = [
        [r["recipe"], f"{r['fd_domain']:.2f}", r["epochs_done"], f"{r['fd_domain'] / best:.2f}"]
        for r in rows
    ]
    return table(header, "lrrr", cells)


def numbers(quality: dict, fused: dict) -> dict:
    """The figures NOTES quotes: the preset against the textbook, from the same two runs."""
    rec = quality["recipes"]
    fm, tb = rec["fmnist"]["curve"], rec["textbook"]["curve"]
    ratios = rec["fmnist"]["ratios"]
    at_epoch = [r["vs_ref_at_epoch"] for r in ratios]
    at_cpu = [r["vs_ref_at_cpu_seconds"] for r in ratios if r["vs_ref_at_cpu_seconds"]]
    best = min(fm, key=lambda r: r["fd_domain"])
    budget, rows = at_budget(quality)
    at = {r["recipe"]: r["fd_domain"] for r in rows}
    w16 = [v for k, v in at.items() if k.startswith("w16")]
    u, ut = fused["recipes"]["fmnist"]["curve"], fused["recipes"]["textbook"]["curve"]
    n = quality["epochs"]
    values = {
        "epochs": n,
        "ep_lo": min(at_epoch),
        "ep_hi": max(at_epoch),
        **{f"f{e}": fm[e - 1]["fd_domain"] for e in (1, 2, 3, 5)},
        **{f"t{e}": tb[e - 1]["fd_domain"] for e in (3, 5)},
        "f10": fm[n - 1]["fd_domain"],
        "t10": tb[n - 1]["fd_domain"],
        "fbest": best["fd_domain"],
        "fbest_epoch": best["epoch"],
        "f_cpu": fm[n - 1]["cpu_seconds"] / n,
        "t_cpu": tb[n - 1]["cpu_seconds"] / n,
        "cpu_lo": min(at_cpu),
        "cpu_hi": max(at_cpu),
        "budget": budget,
        "b_fmnist": at["fmnist"],
        "b_w16_lo": min(w16),
        "b_w16_hi": max(w16),
        "b_textbook": at["textbook"],
        "u1": u[0]["fd_domain"],
        "u2": u[1]["fd_domain"],
        "ut1": ut[0]["fd_domain"],
        "ut2": ut[1]["fd_domain"],
        "r1": u[0]["fd_domain"] / ut[0]["fd_domain"],
        "r2": u[1]["fd_domain"] / ut[1]["fd_domain"],
    }
    whole = ("f_cpu", "t_cpu", "budget")  # CPU seconds: whole numbers
    return {
        k: v if isinstance(v, int) else format(v, ".0f" if k in whole else ".2f")
        for k, v in values.items()
    }


def section(res: dict, source: str, fused: dict, fused_source: str, out: Path) -> str:
    """The section's Markdown; draws quality.png into out."""
    m, quality = res["machine"], res["quality"]
    where = m["gpu"] or f"{m['cores']} CPU cores"
    plots.quality(quality, out / "quality.png", f"fd_domain (10k vs test, log) on {where}")
    n = numbers(quality, fused["quality"])
    return "\n".join(
        [
            "### Quality: each recipe against a textbook DCGAN, same run\n",
            INTRO.format(source=source, cores=m["cores"]),
            RECIPES,
            curve_table(quality) + "\n",
            BUDGET.format(epochs=quality["epochs"]),
            budget_table(quality) + "\n",
            "![fd_domain against epoch and against training CPU seconds](quality.png)\n",
            NOTES.format(**n, fused_source=fused_source),
        ]
    )
