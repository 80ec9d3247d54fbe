"""Quality per epoch and per second: each recipe against the textbook DCGAN, same data, same seed.

Every recipe trains on the full Fashion-MNIST training split. After every epoch its sampling G
(G_ema where the recipe has one; the textbook's G in eval mode) draws 10k images, scored by
fd_domain against the 10k test images (the in-domain classifier's features) with class coverage.
Seconds count training only (wall and process CPU), not evaluation. Each recipe keeps its
checkpoints under the work folder, so an interrupted bench resumes where it stopped.

    python -m bench quality --epochs 5 --recipes fmnist,v=fmnist [--set v:lr_g=1e-4]
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from bench import ROOT
from bench.common import cpu_now, interp_log, parse_sets, recipe_key, side_by_side

# the evaluation protocol of every row: 10k generated against the 10k test images
PROTOCOL = ("metric=fd_domain", "fid_samples=10000", "fid_ref_split=test")
SCORES = ("fd_domain", "class_coverage_min", "class_entropy", "diversity")
# the shipped Fashion-MNIST presets, each on the full training split
PRESETS = ("fmnist", "fmnist-long", "seed001-v1", "seed001-v2", "seed002-dcgan")


def recipe_overrides(name: str, extra: dict[str, list[str]]) -> tuple[str, list[str]]:
    """(preset, overrides) of a recipe name: a preset, or 'label=preset' with --set values."""
    preset = name.split("=", 1)[-1]
    return preset, [*extra.get(name.split("=", 1)[0], [])]


def run_textbook(work: Path, epochs: int, data_dir: str, device: str) -> list[dict]:
    """Train (or resume) the textbook DCGAN to `epochs`, scoring every epoch."""
    from bench.textbook_dcgan import Textbook
    from gan.checkpoint import save_checkpoint
    from gan.config import make_config
    from gan.data import load_split
    from gan.metrics import make_evaluator

    cfg = make_config(dict(kv.split("=", 1) for kv in (*PROTOCOL, f"data_dir={data_dir}")))
    data = load_split(cfg, "train")
    tb = Textbook(data.images[:, 0].numpy(), seed=cfg.seed, device=device)
    evaluator = make_evaluator(cfg, device)
    path, rows = work / "textbook.pt", []
    if path.exists():
        state = torch.load(path, map_location=device, weights_only=True)
        tb.load_state_dict(state["trainer"])
        rows = json.loads(state["rows"])
    while tb.epoch < epochs:
        t0, c0 = time.perf_counter(), cpu_now()
        losses = tb.train_epoch()
        if tb.device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, cpu_now() - c0
        prev = rows[-1] if rows else {"seconds": 0.0, "cpu_seconds": 0.0}
        scores = evaluator.evaluate(tb.G)
        rows.append(
            {
                "epoch": tb.epoch,
                **{k: scores[k] for k in SCORES},
                **losses,
                "seconds": prev["seconds"] + wall,
                "cpu_seconds": prev["cpu_seconds"] + cpu,
            }
        )
        _print_row("textbook", rows[-1])
        save_checkpoint({"trainer": tb.state_dict(), "rows": json.dumps(rows)}, path)
    return rows[:epochs]


def run_gan(
    label: str,
    preset: str,
    overrides: list[str],
    work: Path,
    epochs: int,
    data_dir: str,
    device: str,
) -> tuple[list[dict], dict]:
    """Train (or resume) a gan recipe with gan's own loop, which scores G_ema every epoch."""
    from gan.config import load_config, to_dict
    from gan.train import train

    cfg = load_config(
        preset=preset,
        overrides=[
            f"epochs={epochs}",  # a recipe's own epochs=N (a short screening curve) wins
            *overrides,
            f"name={label}",
            "limit=0",  # the full training split, whatever the preset's own subset
            "dataset=fashion_mnist",
            "eval_every=1",
            "sample_every=1",
            "checkpoint_every=1",
            "keep_checkpoints=1",
            f"data_dir={data_dir}",
            f"device={device}",
            "seed=0",
            *PROTOCOL,
        ],
    )
    run_dir = work / f"recipe-{recipe_key(cfg)}"
    train(cfg, run_dir)
    by_epoch: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["kind"] in ("epoch", "eval"):  # the last one of an epoch wins
            (by_epoch if row["kind"] == "epoch" else evals)[row["epoch"]] = row
    rows, wall, cpu = [], 0.0, 0.0
    for e in range(1, cfg.epochs + 1):
        wall += by_epoch[e]["seconds"]
        cpu += by_epoch[e]["cpu_seconds"]
        rows.append(
            {
                "epoch": e,
                **{k: evals[e][k] for k in SCORES},
                "d_loss": by_epoch[e]["d_loss"],
                "g_loss": by_epoch[e]["g_loss"],
                "seconds": wall,
                "cpu_seconds": cpu,
            }
        )
    return rows, to_dict(cfg)


def _print_row(label: str, r: dict) -> None:
    print(
        f"quality {label:>14} epoch {r['epoch']:>2}: fd_domain {r['fd_domain']:8.3f}  rarest "
        f"class {r['class_coverage_min']:.3f}  {r['seconds']:7.0f} s ({r['cpu_seconds']:.0f} "
        "CPU s)",
        flush=True,
    )


def ratios(rows: list[dict], ref: list[dict]) -> list[dict]:
    """Each epoch's fd_domain over the reference's at the same epoch, and at the same training
    seconds (wall and CPU; the reference's curve interpolated in log fd, never extrapolated)."""
    ref_fd = {r["epoch"]: r["fd_domain"] for r in ref}
    out = []
    for r in rows:
        row = {"epoch": r["epoch"]}
        row["vs_ref_at_epoch"] = (
            r["fd_domain"] / ref_fd[r["epoch"]] if r["epoch"] in ref_fd else None
        )
        for key in ("seconds", "cpu_seconds"):
            at = interp_log([x[key] for x in ref], [x["fd_domain"] for x in ref], r[key])
            row[f"vs_ref_at_{key}"] = r["fd_domain"] / at if at else None
        out.append(row)
    return out


def run_one(task: dict) -> tuple[str, list[dict], dict | None]:
    """One curve (the textbook's when task['preset'] is None): (label, rows, config). Runs in a
    worker process when recipes train side by side, each on `threads` intra-op threads."""
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    common = (task["epochs"], task["data_dir"], task["device"])
    if task["preset"] is None:
        return task["label"], run_textbook(task["work"] / "textbook", *common), None
    rows, cfg = run_gan(task["label"], task["preset"], task["overrides"], task["work"], *common)
    return task["label"], rows, cfg


def bench_quality(
    recipes: list[str],
    epochs: int,
    work: Path,
    data_dir: str,
    device: str = "cpu",
    extra: dict[str, list[str]] | None = None,
    jobs: int = 1,
) -> dict:
    """Curves of the textbook reference and every recipe, with ratios to the reference.

    jobs > 1 trains that many curves side by side in worker processes, the cores shared out
    evenly (a narrow GAN gains little from a second intra-op thread: on 2 cores, 2 curves of
    1 thread each finish sooner than 2 curves of 2 threads one after the other, and every
    curve, the reference's included, is timed under the same share of the machine)."""
    extra = extra or {}
    work.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs, len({*recipes, "textbook"})))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    out = {
        "protocol": "fd_domain, 10k generated vs the 10k Fashion-MNIST test images; full "
        "60k training split; seed 0; seconds are training only",
        "epochs": epochs,
        "device": device,
        "jobs": jobs,
        "threads_per_job": threads or torch.get_num_threads(),
        "recipes": {},
    }
    common = {"work": work, "epochs": epochs, "data_dir": data_dir, "device": device}
    common["threads"] = threads
    tasks = [{"label": "textbook", "preset": None, "overrides": [], **common}]
    for name in recipes:
        if name != "textbook":
            preset, overrides = recipe_overrides(name, extra)
            label = name.split("=", 1)[0]
            tasks.append({"label": label, "preset": preset, "overrides": overrides, **common})
    done = {label: (rows, cfg) for label, rows, cfg in side_by_side(run_one, tasks, jobs)}
    ref = done["textbook"][0]
    out["recipes"]["textbook"] = {"curve": ref, "config": "bench/textbook_dcgan.py"}
    for t in tasks[1:]:
        rows, cfg = done[t["label"]]
        for r in rows:
            _print_row(t["label"], r)
        out["recipes"][t["label"]] = {
            "curve": rows,
            "preset": t["preset"],
            "overrides": t["overrides"],
            "ratios": ratios(rows, ref),
            "config": {k: cfg[k] for k in sorted(cfg)},
        }
    return out


def run(args) -> dict:
    """The textbook and every --recipes curve (default: every Fashion-MNIST preset) to --epochs
    (default: 5 on a CPU, 30 on a GPU, 2 with --quick). Checkpoints under runs/bench-quality/ let
    an interrupted bench resume; the same seed on the CPU gives the same curve on a rerun."""
    gpu = torch.cuda.is_available()
    return bench_quality(
        args.recipes.split(",") if args.recipes else list(PRESETS),
        args.epochs or (2 if args.quick else (30 if gpu else 5)),
        ROOT / "runs" / "bench-quality",
        args.data_dir,
        "cuda" if gpu else "cpu",
        parse_sets(args.set),
        args.jobs or (1 if gpu else os.cpu_count() or 1),
    )
