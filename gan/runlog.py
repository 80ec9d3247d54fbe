"""What a training run writes as it goes: log.jsonl (one JSON row per epoch and per evaluation,
NaN and inf as null), TensorBoard scalars, text and sample grids, the console line and the
progress bar."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from gan import checkpoint as ck
from gan.config import Config, to_dict
from gan.io import atomic_text
from gan.models import count_params
from gan.sampling import png_bytes
from gan.steps import STATS

log = logging.getLogger("gan.train")  # a run logs under one name, whichever module writes


class Progress:
    """The epoch's progress bar on stderr (tqdm), shown only when stderr is a terminal."""

    def __init__(self, epoch: int, epochs: int):
        self.desc, self.bar = f"epoch {epoch}/{epochs}", None

    def __call__(self, i: int, n: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=n, desc=self.desc, unit="step", disable=not sys.stderr.isatty())
        self.bar.update(i - self.bar.n)
        if i == n:
            self.bar.close()


def _finite(v):
    """NaN and inf as None: they are not JSON, and a reader such as jq or pandas refuses them."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_row(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({k: _finite(v) for k, v in row.items()}, allow_nan=False) + "\n")


def truncate_log(path: Path, epoch: int) -> None:
    """Drop the rows of epochs past `epoch` (lost when resuming an older checkpoint), so that
    the log reads as one history."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and _row_epoch(line) <= epoch]
    if len(kept) != len(lines):
        atomic_text("".join(line + "\n" for line in kept), path, "run log")


def _row_epoch(line: str) -> float:
    try:
        return json.loads(line).get("epoch", 0)
    except (ValueError, AttributeError):  # a torn last line from a crash: dropped
        return math.inf


def log_start(cfg: Config, n_images: int, state: ck.TrainState, writer: SummaryWriter) -> None:
    """What a new run trains, on the console and in TensorBoard."""
    log.info(
        "%s: %d images, G %d params, D %d params, device %s",
        cfg.arch,
        n_images,
        count_params(state.G),
        count_params(state.D),
        state.device,
    )
    writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in to_dict(cfg).items()))


def epoch_row(
    state: ck.TrainState, stats: dict, n_img: int, t0: float, c0: float, skipped: int
) -> dict:
    """The epoch's log.jsonl row."""
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "kind": "epoch",
        "epoch": state.epoch,
        **stats,
        "lr_g": state.opt_g.param_groups[0]["lr"],
        "lr_d": state.opt_d.param_groups[0]["lr"],
        "img_per_s": n_img / dt,
        "seconds": dt,
        "cpu_seconds": cpu,  # every thread of this process: steadier than wall time
        "skipped_files": skipped,  # unreadable images left out of the dataset
    }


def log_epoch(row: dict, cfg: Config, run_dir: Path, writer: SummaryWriter) -> None:
    """The epoch's row to log.jsonl, TensorBoard and the console."""
    write_row(run_dir / "log.jsonl", row)
    for k, v in row.items():
        if k not in ("kind", "epoch"):
            writer.add_scalar(f"train/{k}", v, row["epoch"])
    log.info(
        "epoch %d/%d d_loss %.4f g_loss %.4f D(x) %.3f D(G(z)) %.3f %.0f img/s",
        row["epoch"],
        cfg.epochs,
        row["d_loss"],
        row["g_loss"],
        row["d_real"],
        row["d_fake"],
        row["img_per_s"],
    )


def save_samples(grid: torch.Tensor, epoch: int, run_dir: Path, writer: SummaryWriter) -> None:
    """samples/epoch_NNNN.png and the TensorBoard image of a sample grid (float, in [0, 1])."""
    (run_dir / "samples").mkdir(exist_ok=True)
    png = png_bytes((grid * 255).round().to(torch.uint8))
    (run_dir / "samples" / f"epoch_{epoch:04d}.png").write_bytes(png)
    writer.add_image("samples", grid, epoch)


def last_eval(path: Path, epoch: int) -> dict | None:
    """The metrics of the evaluation at `epoch` in log.jsonl (as log_eval wrote them), or None."""
    found = None
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("kind") == "eval" and row.get("epoch") == epoch:
                found = {k: v for k, v in row.items() if k != "kind"}
    return found


def log_eval(metrics: dict, run_dir: Path, writer: SummaryWriter) -> None:
    """An evaluation's scores to log.jsonl, TensorBoard and the console."""
    epoch = metrics["epoch"]
    write_row(run_dir / "log.jsonl", {"kind": "eval", **metrics})
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            writer.add_scalar(f"eval/{k}", v, epoch)
    shown = (
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if k not in STATS
    )
    log.info("epoch %d: %s", epoch, ", ".join(shown))
