"""The training loop: `train(cfg, run_dir, report)` -> `train_epoch` -> `d_step` / `g_step`."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from gan import checkpoint as ck
from gan.checkpoint import resolve_device
from gan.config import Config, GanError, make_config, save_config, to_dict
from gan.data import augment, load_split, to_float
from gan.diffaug import diff_augment, parse_policy
from gan.io import atomic_text
from gan.losses import d_loss, g_loss, r1_penalty
from gan.models import count_params
from gan.sampling import labels_for, latents

log = logging.getLogger(__name__)

Report = Callable[[dict, "str | None"], None]
# keys that may change when a run resumes; anything else would make the checkpoint meaningless
RESUMABLE = {
    "name",
    "epochs",
    "eval_every",
    "sample_every",
    "checkpoint_every",
    "keep_checkpoints",
    "device",
    "amp",
    "compile",
    "data_dir",
    "fid_samples",
    "fid_ref_split",
    "fid_weights",
    "kid",
    "prc",
    "metric",
    "zip_member_max_bytes",
    "zip_max_bytes",
}
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")
# an epoch's mean |d_loss| or |g_loss| beyond this is divergence: healthy tiny runs (bce and
# hinge, lr 2e-4 to 1e-2) measured losses of 0 to 2, runs at lr 1e3 measured 1e13 to 1e15
DIVERGE_LOSS = 1.0e4
GRID_MAX_CLASSES = 16  # a conditional sample grid gets one column per class up to this many


def divergence(stats: dict) -> str | None:
    """Why an epoch's stats mean the run diverged, or None when they look trainable."""
    if not all(math.isfinite(v) for v in stats.values()):
        return "NaN/inf"
    big = [k for k in ("d_loss", "g_loss") if abs(stats[k]) > DIVERGE_LOSS]
    return f"|{big[0]}| above {DIVERGE_LOSS:g}" if big else None


# -- one step ---------------------------------------------------------------------------------


def d_step(D, opt_d, real, fake, y_real, y_fake, cfg: Config, r1: bool = False) -> torch.Tensor:
    """One D update on a real and a (detached) fake batch, both through DiffAugment when on, with
    the lazy R1 penalty when `r1`; returns the stats row (no host sync)."""
    policy = parse_policy(cfg.diffaug)
    real_in = diff_augment(real, policy)
    if r1:  # R1 differentiates D's output on the real images D sees (augmented ones)
        real_in = real_in.detach().requires_grad_(True)
    d_real = D(real_in, y_real)
    d_fake = D(diff_augment(fake.detach(), policy), y_fake)
    loss = d_loss(d_real, d_fake, cfg.loss, cfg.label_smoothing, cfg.label_noise)
    total = loss
    if r1:  # weighted by r1_every: one penalty stands for the r1_every steps it skipped
        total = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1_penalty(d_real, real_in)
    opt_d.zero_grad(set_to_none=True)
    total.backward()
    opt_d.step()
    with torch.no_grad():
        d_r, d_f = d_real.float(), d_fake.float()
        return torch.stack(
            [
                loss.detach(),
                torch.sigmoid(d_r).mean(),
                torch.sigmoid(d_f).mean(),
                (d_r > 0).float().mean(),
                (d_f < 0).float().mean(),
            ]
        )


def g_step(G, D, opt_g, fake, y_fake, cfg: Config) -> torch.Tensor:
    """One G update through a frozen D (seed 000): D gets no gradients and its weights stay put."""
    D.requires_grad_(False)
    try:
        loss = g_loss(D(diff_augment(fake, parse_policy(cfg.diffaug)), y_fake), cfg.loss)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return loss.detach()


def ema_beta(cfg: Config, step: int) -> float:
    """The EMA decay after G step `step` (1-based)."""
    if cfg.ema_rampup > 0:
        # StyleGAN2-ADA: ema_decay's half-life in images, capped at ema_rampup x images seen, so
        # that G_ema never averages over mostly untrained weights
        half_life = cfg.batch_size * math.log(0.5) / math.log(cfg.ema_decay)
        half_life = min(half_life, cfg.ema_rampup * step * cfg.batch_size)
        return 0.5 ** (cfg.batch_size / max(half_life, 1e-8))
    return min(cfg.ema_decay, (1 + step) / (10 + step))  # the fixed ramp of older runs


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """G_ema <- decay * G_ema + (1 - decay) * G; buffers (BatchNorm statistics) are copied."""
    torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - decay)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


# -- one epoch --------------------------------------------------------------------------------


def train_epoch(G, D, G_ema, opt_g, opt_d, real, labels, cfg: Config, step: int, progress=None):
    """One pass over the device-resident uint8 `real`; returns (stats tensor, images, new step)."""
    device = real.device
    n, B = real.shape[0], cfg.batch_size
    perm = torch.randperm(n).to(device)  # the global CPU RNG: saved in checkpoints for exact resume
    n_cls = G.num_classes
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    sums = torch.zeros(len(STATS), device=device)  # accumulated on device, read once per epoch
    steps = n // B  # drop the last partial batch: BatchNorm misbehaves on tiny batches
    g_steps = 0
    for i in range(steps):
        idx = perm[i * B : (i + 1) * B]
        x = to_float(real[idx])  # (B, C, H, W) in [-1, 1]
        if cfg.hflip or cfg.rotate or cfg.zoom:
            x = augment(x, cfg.hflip, cfg.rotate, cfg.zoom)  # real images only (seed 000)
        x = x.contiguous(memory_format=torch.channels_last)  # faster convs on GPU and CPU alike
        y_real = labels[idx] if n_cls else None
        y_fake = torch.randint(0, n_cls, (B,), device=device) if n_cls else None
        do_g = (i + 1) % cfg.d_steps == 0
        z = torch.randn(B, G.latent_dim, device=device)
        with amp:
            # ---- D step: real vs fake ---------------------------------------------------------
            with torch.set_grad_enabled(do_g):  # keep G's graph only when G steps on this batch
                fake = G(z, y_fake)
            r1 = cfg.r1_gamma > 0 and i % cfg.r1_every == 0
            row = d_step(D, opt_d, x, fake, y_real, y_fake, cfg, r1)
            # ---- G step: fool the frozen D ----------------------------------------------------
            if do_g:
                gl = g_step(G, D, opt_g, fake, y_fake, cfg)
                g_steps += 1
                step += 1
                if G_ema is not None:
                    ema_update(G_ema, G, ema_beta(cfg, step))
            else:
                gl = torch.zeros((), device=device)
        sums += torch.cat([row[:1], gl.view(1).float() * cfg.d_steps, row[1:]])
        if progress is not None:
            progress(i + 1, steps)
    sums /= max(steps, 1)
    return sums, steps * B, step


# -- the run ----------------------------------------------------------------------------------


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


def check_resumable(saved: Config, cfg: Config, run_dir: Path) -> None:
    """Refuse to resume a run with a different model, data or optimiser."""
    a, b = to_dict(saved), to_dict(cfg)
    changed = sorted(k for k in a if k not in RESUMABLE and a[k] != b[k])
    if changed:
        diffs = ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in changed)
        raise GanError(
            f"run directory {run_dir} was trained with other settings ({diffs}); "
            "pass a new --out to start a new run, or drop those overrides"
        )


def sample_grid(G: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """A grid image (C, H, W) in [0, 1] from fixed noise, G left in its previous mode: 8 columns,
    or for a conditional G of at most 16 classes one column per class (labels 0, 1, ... per row)."""
    was = G.training
    G.eval()
    with torch.no_grad():
        x = G(z, y).float()
    G.train(was)
    nrow = grid_columns(G.num_classes if y is not None else 0)
    return make_grid(x, nrow=nrow, normalize=True, value_range=(-1, 1))


def grid_columns(n_cls: int) -> int:
    """Columns of a sample grid: one per class for a conditional G of at most GRID_MAX_CLASSES
    classes, else 8; a grid has 8 rows."""
    return n_cls if 0 < n_cls <= GRID_MAX_CLASSES else 8


def _finite(v):
    """NaN and inf as None: they are not JSON, and a reader such as jq or pandas refuses them."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _write_json(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({k: _finite(v) for k, v in row.items()}, allow_nan=False) + "\n")


def _truncate_log(path: Path, epoch: int) -> None:
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
    _truncate_log(run_dir / "log.jsonl", state.epoch)  # epoch 0: a fresh start, no rows kept
    if state.epoch >= cfg.epochs:
        log.info(
            "%s already trained to epoch %d (epochs=%d); raise epochs to go on",
            run_dir,
            state.epoch,
            cfg.epochs,
        )
        return _result("completed", state, run_dir)
    z_fixed, y_fixed = fixed_noise(cfg, state.G.num_classes, device)
    real = data.images.to(device)
    labels = data.labels.to(device) if data.labels is not None else None
    G_run, D_run = _maybe_compile(state.G, cfg.compile), _maybe_compile(state.D, cfg.compile)
    nets = (G_run, D_run, state.G_ema, state.opt_g, state.opt_d)  # what train_epoch updates
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
            sums, n_img, state.step = train_epoch(*nets, real, labels, cfg, state.step, progress)
            stats = dict(zip(STATS, sums.tolist(), strict=True))  # the epoch's one host sync
            row = epoch_row(state, stats, n_img, t0, c0, data.skipped)
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
                save_samples(sample_grid(G_show, z_fixed, y_fixed), epoch, run_dir, writer)
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


def fixed_noise(cfg: Config, n_cls: int, device: torch.device):
    """The (z, y) of every sample grid: images 0..n-1 of the run's seed (gan.sampling), so the
    training RNG is untouched. 64 images; for a conditional G of at most 16 classes, 8 rows of
    every class in label order."""
    n = 8 * grid_columns(n_cls)
    z = latents(cfg.seed, 0, n, cfg.latent_dim).to(device)
    return z, labels_for(0, n, range(n_cls)).to(device) if n_cls else None


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


def every(epoch: int, period: int) -> bool:
    """Whether `epoch` is one of every `period` epochs (period 0 or less: never)."""
    return period > 0 and epoch % period == 0


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
    _write_json(run_dir / "log.jsonl", {**row, "diverged": True})
    if report is not None:
        report({"epoch": row["epoch"], **stats, cfg.metric: math.inf, "diverged": True}, None)


def log_epoch(row: dict, cfg: Config, run_dir: Path, writer: SummaryWriter) -> None:
    """The epoch's row to log.jsonl, TensorBoard and the console."""
    _write_json(run_dir / "log.jsonl", row)
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
    """samples/epoch_NNNN.png and the TensorBoard image of a sample grid."""
    (run_dir / "samples").mkdir(exist_ok=True)
    save_image(grid, run_dir / "samples" / f"epoch_{epoch:04d}.png")
    writer.add_image("samples", grid, epoch)


def log_eval(metrics: dict, run_dir: Path, writer: SummaryWriter) -> None:
    """An evaluation's scores to log.jsonl, TensorBoard and the console."""
    epoch = metrics["epoch"]
    _write_json(run_dir / "log.jsonl", {"kind": "eval", **metrics})
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            writer.add_scalar(f"eval/{k}", v, epoch)
    shown = (
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if k not in STATS
    )
    log.info("epoch %d: %s", epoch, ", ".join(shown))


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


def _maybe_compile(m: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return m
    try:
        return torch.compile(m)
    except Exception as e:  # noqa: BLE001  (backend problems vary by platform)
        log.warning("torch.compile unavailable (%s); running eager", e)
        return m
