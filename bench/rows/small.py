"""Limited data and long runs: each recipe on a fixed class-balanced Fashion-MNIST subset of 1,000
or 5,000 training images, trained to about 1M images seen (1,000 and 200 epochs), side by side
with the textbook DCGAN on the same subset.

Every `every` epochs a recipe keeps a checkpoint; each is scored afterwards: fd_domain of 10k
generated images against the 10k test images (not the training subset; the in-domain
classifier of the full training split, the quality row's feature space), the rarest class's
share, and memorisation (gan.utility: nearest-training-image pixel distance of the fakes over
that of the test images, and the share of near-copies). Utility (a classifier trained on the
subset, on the subset plus generated images, on generated images only) is scored at each
finished conditional recipe's best and last checkpoint. Runs and scores live under --work, so an
interrupted bench resumes where it stopped (the textbook from its last state, gan recipes from
their checkpoints, scores from the checkpoints not yet scored). Hours on a CPU, so run only when
named:

    python -m bench small --sizes 1000 --recipes textbook,small --jobs 2 [--score-only]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from bench.common import cpu_now, parse_sets, recipe_key, side_by_side

SIZES = {1000: 1000, 5000: 200}  # training images: epochs (1M images seen either way)
EVERY = {1000: 50, 5000: 10}  # epochs between scored checkpoints (20 points a curve)
GEN = 10_000  # generated images per score
# recipes: a preset with overrides; `small` is the preset under test
# (the preset carries R1 since small-plus-r1 was measured: the recipes measured before it say
# r1_gamma=0.0, so that each label still trains what its committed curves measured)
RECIPES = {
    "small": ("small", []),
    # the preset before R1: the `small` curves of the first limited-data run
    "small-before-r1": ("small", ["r1_gamma=0.0"]),
    # the small preset with DiffAugment always on and no LeCam: how it shipped first
    "small-diffaug": ("small", ["ada_target=0.0", "lecam=0.0", "r1_gamma=0.0"]),
    # the small preset annealed for a stable end: learning rates to 5% (not 20%) of their start,
    # G_ema's half-life 5% of the run (not ema_decay's fixed 22k images)
    "small-anneal": ("small", ["lr_end=0.05", "ema_horizon=0.05", "r1_gamma=0.0"]),
    # R1 on real images (lazy, every 16 D steps) on top of the annealed preset
    "small-r1": ("small", ["lr_end=0.05", "ema_horizon=0.05", "r1_gamma=0.1"]),
    # R1 on the small preset's own schedule (lr_end 0.2, ema_decay's fixed half-life): the
    # preset as it now ships
    "small-plus-r1": ("small", ["r1_gamma=0.1"]),
    # the preset with a third more channels in G and D (1.8x the compute): does capacity lift
    # utility on 1,000 images, where every way of mixing the images in stayed under +0.7 points?
    "small-wide": ("small", ["width=32"]),
    "fmnist": ("fmnist", []),  # the full-data recipe as it is (per-epoch decay included)
}
DEFAULT = ("textbook", "small", "small-diffaug")


def every_of(size: int, epochs: int) -> int:
    """Epochs between the scored checkpoints of a curve of `epochs` on `size` images."""
    return min(EVERY.get(size, max(1, epochs // 20)), epochs)


def work_dir(default: str = "") -> Path:
    """Where runs and scores live: kept across sessions outside the work tree by default."""
    return Path(default or os.environ.get("GAN_BENCH_WORK", "~/.cache/gan-bench")).expanduser()


def subset_config(size: int, data_dir: str, extra: list[str] = ()):
    """The subset's data settings: a fixed class-balanced draw of `size` training images."""
    from gan.config import load_config

    return load_config(
        overrides=[
            "dataset=fashion_mnist",
            f"limit={size}",
            "balanced=true",
            *extra,
            f"data_dir={data_dir}",
        ]
    )


def score_config(data_dir: str):
    """The scoring protocol: 10k generated vs the 10k test images, full-split classifier."""
    from gan.config import make_config

    return make_config(
        dict(metric="fd_domain", fid_samples=GEN, fid_ref_split="test", data_dir=data_dir)
    )


# -- training -----------------------------------------------------------------------------------


def train_textbook(run: Path, size: int, epochs: int, every: int, data_dir: str, device: str):
    """The textbook DCGAN on the subset; its G (and trainer, for resuming) every `every` epochs."""
    from bench.textbook_dcgan import Textbook
    from gan.checkpoint import save_checkpoint
    from gan.data import load_split

    data = load_split(subset_config(size, data_dir), "train")
    # workers=0: with 1,000 images an epoch is 8 batches, and two worker processes started for
    # each of 1,000 epochs would cost more than the decoding they take over
    tb = Textbook(data.images[:, 0].numpy(), seed=0, workers=0, device=device)
    run.mkdir(parents=True, exist_ok=True)
    state_path, seconds = run / "trainer.pt", {"wall": 0.0, "cpu": 0.0}
    if state_path.exists():
        saved = torch.load(state_path, map_location=device, weights_only=True)
        tb.load_state_dict(saved["trainer"])
        seconds = json.loads(saved["seconds"])
    while tb.epoch < epochs:
        t0, c0 = time.perf_counter(), cpu_now()
        tb.train_epoch()
        seconds["wall"] += time.perf_counter() - t0
        seconds["cpu"] += cpu_now() - c0
        if tb.epoch % every == 0 or tb.epoch == epochs:
            snap = {"G": tb.G.state_dict(), "epoch": tb.epoch, "seconds": json.dumps(seconds)}
            save_checkpoint(snap, run / f"g_{tb.epoch:06d}.pt")
            state = {"trainer": tb.state_dict(), "seconds": json.dumps(seconds)}
            save_checkpoint(state, state_path)
            print(f"small {size} textbook epoch {tb.epoch}", flush=True)


def gan_config(
    preset: str, overrides: list[str], size: int, epochs: int, every: int, data_dir, device: str
):
    from gan.config import load_config

    return load_config(
        preset=preset,
        overrides=[
            f"epochs={epochs}",
            *overrides,
            "dataset=fashion_mnist",  # a preset for your own folder, measured on Fashion-MNIST
            "image_size=28",
            "channels=1",
            f"limit={size}",
            "balanced=true",
            "eval_every=-1",  # scored afterwards from the kept checkpoints
            f"sample_every={every}",
            f"checkpoint_every={every}",
            "keep_checkpoints=100000",
            f"data_dir={data_dir}",
            f"device={device}",
            "seed=0",
        ],
    )


def train_gan(run: Path, cfg) -> None:
    """gan's own loop; a rerun resumes from the newest checkpoint."""
    from gan.train import train

    train(cfg, run)


# -- scoring ------------------------------------------------------------------------------------


class Scorer:
    """fd_domain, rarest class and memorisation of a generator against one subset."""

    def __init__(self, size: int, data_dir: str, device: str):
        from gan.data import load_split
        from gan.metrics import make_evaluator

        self.device = torch.device(device)
        self.evaluator = make_evaluator(score_config(data_dir), self.device)
        self.train = load_split(subset_config(size, data_dir), "train")
        self.test = load_split(score_config(data_dir), "test")

    def __call__(self, G) -> dict:
        from gan.sampling import EVAL_SEED, sample
        from gan.utility import memorisation

        G.eval()
        fake, _ = sample(G, EVAL_SEED, 0, GEN)
        scores = self.evaluator.evaluate_images(fake)
        out = {k: scores[k] for k in ("fd_domain", "class_coverage_min", "diversity")}
        out.update(memorisation(fake, self.train.images, self.test.images))
        return out


def textbook_generator(path: Path, device: str):
    from bench.textbook_dcgan import TextbookG

    snap = torch.load(path, map_location=device, weights_only=True)
    G = TextbookG().to(device)
    G.load_state_dict(snap["G"])
    return G, snap["epoch"], json.loads(snap["seconds"])


def gan_generator(path: Path, device: str, run: Path):
    from gan.checkpoint import load_generator

    G, _, state = load_generator(path, device)
    epoch = state["epoch"]
    seconds = {"wall": 0.0, "cpu": 0.0}
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == "epoch" and row["epoch"] <= epoch:
            seconds["wall"] += row["seconds"]
            seconds["cpu"] += row["cpu_seconds"]
    return G, epoch, seconds


def score_run(label: str, run: Path, size: int, data_dir: str, device: str) -> list[dict]:
    """Score every kept checkpoint of a run not scored yet; the curve, oldest first."""
    path = run / "scores.json"
    scores = json.loads(path.read_text()) if path.exists() else {}
    if label == "textbook":
        found = sorted(run.glob("g_*.pt"))
    else:
        from gan.checkpoint import numbered

        found = numbered(run)
    scorer = None
    for ckpt in found:
        if ckpt.name in scores:
            continue
        scorer = scorer or Scorer(size, data_dir, device)
        if label == "textbook":
            G, epoch, seconds = textbook_generator(ckpt, device)
        else:
            G, epoch, seconds = gan_generator(ckpt, device, run)
        row = {"epoch": epoch, "images_seen": epoch * size, **scorer(G)}
        row.update(seconds=seconds["wall"], cpu_seconds=seconds["cpu"], checkpoint=ckpt.name)
        scores[ckpt.name] = row
        print(
            f"small {size} {label:>12} epoch {epoch:>4}: fd_domain {row['fd_domain']:8.3f}  "
            f"rarest {row['class_coverage_min']:.3f}  memorisation {row['memorisation_ratio']:.3f}"
            f"  near-copies {row['near_copies']:.3f}",
            flush=True,
        )
        path.write_text(json.dumps(scores, indent=1))
    return sorted(scores.values(), key=lambda r: r["epoch"])


# -- one curve, the bench -----------------------------------------------------------------------


def gan_run_dir(work: Path, size: int, label: str, cfg) -> Path:
    """Where the small row keeps a recipe's run on a subset: the recipe's label and the hash of
    what it trains (recipe_key), so that a changed recipe starts a new run, not a resumed one."""
    return work / f"{size}" / f"{label}-{recipe_key(cfg)}"


def run_one(task: dict) -> tuple[str, int, list[dict], dict | None]:
    """Train (or resume) one recipe on one subset, then score it: (label, size, curve, config)."""
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    size, label, device, data_dir = task["size"], task["label"], task["device"], task["data_dir"]
    epochs, every, training = task["epochs"], task["every"], task.get("train", True)
    if label == "textbook":
        run = task["work"] / f"{size}" / "textbook"
        if training:
            train_textbook(run, size, epochs, every, data_dir, device)
        return label, size, score_run(label, run, size, data_dir, device), None
    from gan.config import to_dict

    cfg = gan_config(task["preset"], task["overrides"], size, epochs, every, data_dir, device)
    run = gan_run_dir(task["work"], size, label, cfg)
    if training:
        train_gan(run, cfg)
    curve = score_run(label, run, size, data_dir, device) if run.is_dir() else []
    if curve and cfg.conditional and curve[-1]["epoch"] == epochs:  # a finished run only
        curve = score_utility(run, curve, size, data_dir, device)
    return label, size, curve, to_dict(cfg)


def score_utility(run: Path, curve: list[dict], size: int, data_dir: str, device: str):
    """Utility (gan.utility) at the best and the last scored checkpoint, cached with the scores."""
    from gan.checkpoint import load_generator
    from gan.data import load_split
    from gan.utility import utility

    path = run / "scores.json"
    scores = json.loads(path.read_text())
    best = min(curve, key=lambda r: r["fd_domain"])
    for row in {best["checkpoint"]: best, curve[-1]["checkpoint"]: curve[-1]}.values():
        if "utility_real" in scores[row["checkpoint"]]:
            continue
        G, _, _ = load_generator(run / "checkpoints" / row["checkpoint"], device)
        train = load_split(subset_config(size, data_dir), "train")
        test = load_split(score_config(data_dir), "test")
        scores[row["checkpoint"]].update(utility(G, train, test, device))
        u = scores[row["checkpoint"]]
        print(
            f"small {size} utility at epoch {row['epoch']}: real {u['utility_real']:.4f}  "
            f"real+generated {u['utility_real_plus_generated']:.4f}  generated only "
            f"{u['utility_generated_only']:.4f}",
            flush=True,
        )
        path.write_text(json.dumps(scores, indent=1))
    return sorted(scores.values(), key=lambda r: r["epoch"])


def summary(curve: list[dict], ref: list[dict]) -> dict:
    """Best and last fd_domain, their ratio, against the reference's best (same subset)."""
    best = min(curve, key=lambda r: r["fd_domain"])
    last = curve[-1]
    out = {
        "best_fd_domain": best["fd_domain"],
        "best_epoch": best["epoch"],
        "last_fd_domain": last["fd_domain"],
        "last_over_best": last["fd_domain"] / best["fd_domain"],
        "last_memorisation_ratio": last["memorisation_ratio"],
        "min_memorisation_ratio": min(r["memorisation_ratio"] for r in curve),
        "last_near_copies": last["near_copies"],
    }
    if ref:
        out["best_vs_textbook_best"] = best["fd_domain"] / min(r["fd_domain"] for r in ref)
    return out


def bench_small(
    sizes: list[int],
    recipes: list[str],
    work: Path,
    data_dir: str,
    device: str = "cpu",
    extra: dict[str, list[str]] | None = None,
    jobs: int = 1,
    epochs: dict[int, int] | None = None,
    training: bool = True,
) -> dict:
    """Curves of the textbook and each recipe on each subset size, with summaries; with
    training=False, the checkpoints already kept are scored and nothing is trained."""
    extra, epochs = extra or {}, {**SIZES, **(epochs or {})}
    jobs = max(1, min(jobs, len(sizes) * len(recipes)))  # no more workers than curves
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    tasks = []
    for size in sizes:
        for name in recipes:
            label, _, preset = name.partition("=")
            preset, overrides = RECIPES.get(preset or label, (preset or label, []))
            every = every_of(size, epochs[size])
            tasks.append(
                {
                    "label": label,
                    "preset": preset,
                    "overrides": [*overrides, *extra.get(label, [])],
                    "size": size,
                    "epochs": epochs[size],
                    "every": every,
                    "work": work,
                    "data_dir": data_dir,
                    "device": device,
                    "threads": threads,
                    "train": training,
                }
            )
    out = {
        "protocol": "fd_domain of 10k generated vs the 10k Fashion-MNIST test images (the "
        "full-split in-domain classifier); memorisation in pixels vs the test images; "
        "class-balanced training subsets (seed fixed); seconds are training only",
        "device": device,
        "jobs": jobs,
        "threads_per_job": threads or torch.get_num_threads(),
        "sizes": {},
    }
    for label, size, curve, cfg in side_by_side(run_one, tasks, jobs):
        entry = out["sizes"].setdefault(str(size), {"epochs": epochs[size], "recipes": {}})
        if curve:
            entry["recipes"][label] = {"curve": curve, "config": cfg or "bench/textbook_dcgan.py"}
    for entry in out["sizes"].values():
        ref = entry["recipes"].get("textbook", {}).get("curve", [])
        for rec in entry["recipes"].values():
            if rec["curve"]:
                rec["summary"] = summary(rec["curve"], ref)
    return out


def run(args) -> dict:
    """--sizes and --recipes (default: the textbook, small and small-diffaug) to about 1M images
    seen each, with --jobs curves side by side; runs and scores under ~/.cache/gan-bench/small
    ($GAN_BENCH_WORK; small-quick with --quick, 2 epochs) resume; --score-only trains nothing."""
    gpu = torch.cuda.is_available()
    sizes = [int(x) for x in args.sizes.split(",")]
    return bench_small(
        sizes,
        args.recipes.split(",") if args.recipes else list(DEFAULT),
        work_dir() / ("small-quick" if args.quick else "small"),
        args.data_dir,
        "cuda" if gpu else "cpu",
        parse_sets(args.set),
        args.jobs or (1 if gpu else os.cpu_count() or 1),
        {n: 2 for n in sizes} if args.quick else None,
        training=not args.score_only,
    )
