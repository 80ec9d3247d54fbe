"""The training run: `train(cfg, run_dir, report)` builds or resumes, then per epoch calls
`gan.steps.train_epoch`, samples and evaluates G_ema, checkpoints and reports."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter

from gan import checkpoint as ck
from gan.config import RESUMABLE, Config, GanError, make_config, save_config, to_dict
from gan.data import load_split
from gan.device import resolve_device
from gan.runlog import (
    Progress,
    epoch_row,
    last_eval,
    log_epoch,
    log_eval,
    log_start,
    save_samples,
    truncate_log,
    write_row,
)
from gan.sampling import sample_grid
from gan.steps import Nets, train_epoch

log = logging.getLogger(__name__)

Report = Callable[[dict, "str | None"], None]
# an epoch's mean |d_loss| or |g_loss| beyond this is divergence: healthy tiny runs (bce and
# hinge, lr 2e-4 to 1e-2) measured losses of 0 to 2, runs at lr 1e3 measured 1e13 to 1e15
DIVERGE_LOSS = 1.0e4


def divergence(stats: dict) -> str | None:
    """Why an epoch's stats mean the run diverged, or None when they look trainable."""
    if not all(math.isfinite(v) for v in stats.values()):
        return "NaN/inf"
    big = [k for k in ("d_loss", "g_loss") if abs(stats[k]) > DIVERGE_LOSS]
    return f"|{big[0]}| above {DIVERGE_LOSS:g}" if big else None


# -- the run ----------------------------------------------------------------------------------


def check_resumable(saved: Config, cfg: Config, run_dir: Path) -> None:
    """Refuse to resume a run with a different model, data or optimiser: only the keys whose
    field says resume=True (gan.config.RESUMABLE) may change."""
    a, b = to_dict(saved), to_dict(cfg)
    changed = sorted(k for k in a if k not in RESUMABLE and a[k] != b[k])
    if changed:
        diffs = ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in changed)
        raise GanError(
            f"run directory {run_dir} was trained with other settings ({diffs}); "
            "pass a new --out to start a new run, or drop those overrides"
        )


def train(cfg: Config, run_dir: str | Path, report: Report | None = None) -> dict:
    """Train (or resume) a GAN in run_dir; report(metrics, checkpoint_dir) at each evaluation."""
    # Build.
    run_dir = make_run_dir(run_dir)
    device = resolve_device(cfg.device)
    resumed = ck.latest_good(run_dir)
    if resumed:
        check_resumable(make_config(resumed[1]["config"]), cfg, run_dir)
    torch.manual_seed(cfg.seed)
    data = training_data(cfg)
    state = ck.TrainState.build(cfg, data.num_classes, data.class_names, device)
    evaluator = None
    if cfg.eval_every >= 0:  # built before training so that missing weights fail first
        from gan.metrics import make_evaluator

        evaluator = make_evaluator(cfg, device)
    # written once data, models and weights are in place: a failed start leaves no run
    write_run_config(cfg, run_dir)

    # Resume.
    for p in ck.remove_partial_writes(run_dir):
        log.info("removed %s, the partial write of a killed run", p)
    if resumed:
        state.load_state_dict(resumed[1])
        log.info("resumed %s at epoch %d", resumed[0], state.epoch)
    truncate_log(run_dir / "log.jsonl", state.epoch)  # epoch 0: a fresh start, no rows kept
    if state.epoch >= cfg.epochs:
        return already_trained(state, cfg, run_dir, report, resumed[0])
    retuned = state.retune(make_config(resumed[1]["config"])) if resumed else {}
    if retuned:  # e.g. a PBT exploit: the donor's checkpoint under mutated learning rates
        log.info("resumed with new values: %s", retuned)
        write_row(run_dir / "log.jsonl", {"kind": "retune", "epoch": state.epoch, **retuned})
    real = data.images.to(device)
    labels = data.labels.to(device) if data.labels is not None else None
    G_run, D_run = maybe_compile(state.G, cfg.compile), maybe_compile(state.D, compile_d(cfg))
    # what train_epoch updates
    nets = Nets(G_run, D_run, state.opt_g, state.opt_d, state.G_ema, state.d_state)
    writer = SummaryWriter(str(run_dir))
    if not resumed:
        log_start(cfg, len(data), state, writer)
    status = "completed"
    try:
        while state.epoch < cfg.epochs:
            # Train one epoch.
            state.epoch += 1
            epoch, t0, c0 = state.epoch, time.perf_counter(), time.process_time()
            progress = Progress(epoch, cfg.epochs)
            result = train_epoch(nets, real, labels, cfg, step=state.step, progress=progress)
            state.step, stats = result.step, result.stats
            row = epoch_row(state, stats, result.images, t0, c0, data.skipped)
            if divergence(stats) is not None:
                status = "diverged"
                stop_diverged(row, stats, cfg, run_dir, report)
                break
            state.sched_g.step()
            state.sched_d.step()
            log_epoch(row, cfg, run_dir, writer)

            # Sample and evaluate G_ema.
            last = epoch == cfg.epochs
            G_show = state.G_ema if state.G_ema is not None else state.G
            if last or every(epoch, cfg.sample_every):
                save_samples(sample_grid(G_show, cfg.seed), epoch, run_dir, writer)
            evaluate = evaluator is not None and (last or every(epoch, cfg.eval_every))
            metrics, is_best = None, False
            if evaluate:
                scores = evaluator.evaluate(G_show)
                is_best = scores[cfg.metric] < state.best
                state.best = min(state.best, scores[cfg.metric])
                metrics = {"epoch": epoch, **stats, **scores, "diverged": False}
                log_eval(metrics, run_dir, writer)

            # Checkpoint, report.
            if last or evaluate or every(epoch, cfg.checkpoint_every):
                path = ck.save_checkpoint(state.state_dict(), ck.checkpoint_path(run_dir, epoch))
                ck.prune(run_dir, cfg.keep_checkpoints)
                if is_best:
                    ck.copy_atomic(path, run_dir / "checkpoints" / "best.pt")
                if metrics is not None and report is not None:
                    report_with_checkpoint(report, metrics, path)
    finally:
        writer.close()
    return _result(status, state, run_dir)


# -- the steps of train(), in the order it calls them -------------------------------------------


def make_run_dir(run_dir: str | Path) -> Path:
    """Create the run directory, or one GanError naming it (read-only, a file in the way)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ck.write_error(run_dir, e, "run directory") from None
    return run_dir


def training_data(cfg: Config):
    """The prepared train split; GanError if it holds less than one batch."""
    data = load_split(cfg, "train")
    if data.skipped:  # said on every run, not only when the data is first prepared
        log.warning("%d unreadable image file(s) in %s are left out", data.skipped, cfg.data_path)
    if len(data) < cfg.batch_size:
        raise GanError(
            f"dataset has {len(data)} images, fewer than one batch (batch_size="
            f"{cfg.batch_size}); lower batch_size or add images"
        )
    return data


def write_run_config(cfg: Config, run_dir: Path) -> None:
    """config.yaml of the run: what `gan train --out DIR` resumes from."""
    try:
        save_config(cfg, run_dir / "config.yaml")
    except OSError as e:
        raise ck.write_error(run_dir / "config.yaml", e, "run config") from None


def already_trained(state, cfg: Config, run_dir: Path, report, checkpoint: Path) -> dict:
    """A resumed run that has nothing left to train. A tuner whose record stops short of its
    end (its driver stopped while the trial went on to its last epoch) learns it from the last
    evaluation, reported again with the checkpoint."""
    log.info(
        "%s already trained to epoch %d (epochs=%d); raise epochs to go on",
        run_dir,
        state.epoch,
        cfg.epochs,
    )
    last = last_eval(run_dir / "log.jsonl", state.epoch) if report is not None else None
    if last is not None:
        report_with_checkpoint(report, last, checkpoint)
    return _result("completed", state, run_dir)


def every(epoch: int, period: int) -> bool:
    """Whether `epoch` is one of every `period` epochs (period 0 or less: never)."""
    return period > 0 and epoch % period == 0


def stop_diverged(row: dict, stats: dict, cfg: Config, run_dir: Path, report) -> None:
    """Log and report a diverged epoch; train() then stops, keeping the last good checkpoint."""
    log.error(
        "epoch %d: loss is %s (d_loss=%s g_loss=%s); the run diverged; lower the "
        "learning rates or try loss=hinge",
        row["epoch"],
        divergence(stats),
        stats["d_loss"],
        stats["g_loss"],
    )
    write_row(run_dir / "log.jsonl", {**row, "diverged": True})
    if report is not None:
        report({"epoch": row["epoch"], **stats, cfg.metric: math.inf, "diverged": True}, None)


def report_with_checkpoint(report: Report, metrics: dict, path: Path) -> None:
    """report(metrics, a fresh temp dir holding a copy of the checkpoint), as Ray Tune wants."""
    with tempfile.TemporaryDirectory(prefix="gan-ckpt-") as tmp:
        shutil.copyfile(path, Path(tmp) / "checkpoint.pt")
        report(metrics, tmp)


def _result(status: str, state: ck.TrainState, run_dir: Path) -> dict:
    return {
        "status": status,
        "epoch": state.epoch,
        "best_metric": state.best,
        "run_dir": str(run_dir),
    }


def compile_d(cfg: Config) -> bool:
    """Whether D is compiled with `compile`: not under spectral norm, whose power iteration
    updates its vectors in place at every forward. Compiled by Inductor, the residual D's two
    forwards per step (real, fake) then fail at the backward (torch 2.x: "modified by an inplace
    operation"), so D runs eager and G alone is compiled."""
    if cfg.compile and cfg.spectral_norm:
        log.info("compile: G only; D runs eager under spectral_norm")
    return cfg.compile and not cfg.spectral_norm


def maybe_compile(m: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return m
    try:
        return torch.compile(m)
    except Exception as e:  # noqa: BLE001  (backend problems vary by platform)
        log.warning("torch.compile unavailable (%s); running eager", e)
        return m
