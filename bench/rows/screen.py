"""Screening for the quick tune: one trial per recipe at its budget, each scored like its winner.

The quick tune gives a trial one CPU core and at most 3 epochs of 8192 Fashion-MNIST images. At
that budget, which recipe wins per CPU-second? Each candidate here changes one thing from the
one before it (or from `dcgan`), all with seed 0 and one thread (as a 1-CPU Ray trial), and its
best checkpoint is scored on the quality bench's protocol: fd_domain of 10k generated against the
10k test images, with the rarest class's share. `tune_configs/quick.yaml` was derived from it.

    python -m bench screen
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from bench import ROOT

# the quick tune's budget and the settings every candidate shares
BUDGET = ("limit=8192", "epochs=3", "image_size=28", "channels=1", "latent_dim=64", "width=16")
RUN = ("eval_every=1", "sample_every=3", "checkpoint_every=1", "keep_checkpoints=1", "seed=0")
# the recipe of the quick tune before (bench/quick-before.yaml), at lr 2e-4
BEFORE = ("arch=dcgan", "loss=bce", "batch_size=64", "beta1=0.5", "ema_decay=0.99")
LR = ("lr_g=2e-4", "lr_d=2e-4")
B32 = ("batch_size=32", "ema_decay=0.999", "ema_rampup=0.05")
COND = ("conditional=true",)
SNGAN = ("spectral_norm=true", "loss=hinge", "beta1=0.0", "beta2=0.9")
CANDIDATES = {
    "dcgan (before)": (*BEFORE, *LR),
    "dcgan b32 ema-ramp": (*BEFORE, *LR, *B32),
    "dcgan b32 ema-ramp cond": (*BEFORE, *LR, *B32, *COND),
    "dcgan ... cond hinge": (*BEFORE, *LR, *B32, *COND, "loss=hinge"),
    "dcgan ... cond diffaug": (*BEFORE, *LR, *B32, *COND, "diffaug=translation"),
    "dcgan ... cond lr 5e-4": (*BEFORE, *B32, *COND, "lr_g=5e-4", "lr_d=5e-4"),
    "baseline ... cond": (*BEFORE, *LR, *B32, *COND, "arch=baseline"),
    "baseline ... cond lr 5e-4": (*BEFORE, *B32, *COND, "arch=baseline", "lr_g=5e-4", "lr_d=5e-4"),
    "modified ... cond": (*BEFORE, *LR, *B32, *COND, "arch=modified"),
    "resnet w8 sngan b32": (*BEFORE, *LR, *B32, *SNGAN, "arch=resnet", "width=8"),
}


def screen_one(label: str, overrides: tuple, work: Path, data_dir: str) -> dict:
    """Train one candidate from scratch on one thread; its training CPU s and 10k score."""
    from bench.rows.quick import score
    from gan.config import load_config, to_dict
    from gan.train import train

    cfg = load_config(
        overrides=[
            "dataset=fashion_mnist",
            f"data_dir={data_dir}",
            "device=cpu",
            "metric=fd_domain",
            "fid_samples=1000",  # the tune's own per-epoch score
            *BUDGET,
            *RUN,
            *overrides,
            "name=screen",
        ]
    )
    run_dir = work / label.replace(" ", "-").replace(".", "")
    shutil.rmtree(run_dir, ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    return {
        "label": label,
        "overrides": list(overrides),
        "train_cpu_s": round(sum(r["cpu_seconds"] for r in epochs), 1),
        "fd_domain_1k": [round(r["fd_domain"], 2) for r in rows if r["kind"] == "eval"],
        "best_10k": score(run_dir / "checkpoints" / "best.pt", to_dict(cfg)),
    }


def bench_screen(work: Path, data_dir: str, only: list[str] | None = None) -> list[dict]:
    """Every candidate (or those named), in order."""
    out = []
    for label, overrides in CANDIDATES.items():
        if only and label not in only:
            continue
        row = screen_one(label, overrides, work, data_dir)
        s = row["best_10k"]
        print(
            f"screen {label:26s} {row['train_cpu_s']:6.1f} CPU s  fd_domain {s['fd_domain']:7.2f}"
            f"  rarest class {s['class_coverage_min']:.3f}",
            flush=True,
        )
        out.append(row)
    return out


def run(args) -> list[dict]:
    """Every candidate at the quick tune's budget (the same in --quick)."""
    return bench_screen(ROOT / "runs" / "bench-screen", args.data_dir)
