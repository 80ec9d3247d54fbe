"""One step and one epoch of adversarial training: `train_epoch` -> `d_step` / `g_step`, and the
EMA of G that every step updates."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from gan.config import Config
from gan.data import augment, to_float
from gan.diffaug import diff_augment, parse_policy
from gan.losses import d_loss, g_loss, lecam_penalty, r1_penalty

# an epoch's stats, in the order of the log and the console line
STATS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake")


ADA_INTERVAL = 4  # D steps between adjustments of the augmentation probability (ADA's)
ADA_IMAGES = 100_000  # real images over which p can move from 0 to 1 (ADA: 500k on big GPUs)
LECAM_DECAY = 0.99  # the LeCam anchors' EMA decay per D step (the paper's)


@dataclass
class DState:
    """What D's adaptive regularisers carry from step to step, saved in checkpoints: ADA's
    augmentation probability and LeCam's anchors (EMAs of D's mean output on real and fake)."""

    ada_p: float = 0.0
    lecam_real: float = 0.0
    lecam_fake: float = 0.0


@dataclass
class Nets:
    """What an epoch of training updates: G and D (compiled or not), their optimisers, G_ema."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    G_ema: nn.Module | None = None
    d_state: DState | None = None  # ADA and LeCam's state, updated in place (None: both off)


@dataclass
class EpochResult:
    stats: dict[str, float]  # the means of STATS over the epoch's steps
    images: int  # real images seen
    step: int  # G steps so far, this epoch's included


# -- one step ---------------------------------------------------------------------------------


def d_step(
    D,
    opt_d,
    real,
    fake,
    y_real,
    y_fake,
    cfg: Config,
    r1: bool = False,
    p: torch.Tensor | None = None,
    anchors: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One D update on a real and a (detached) fake batch, both through DiffAugment when on (each
    op with probability p under adaptive augmentation), with the lazy R1 penalty when `r1` and
    the LeCam penalty against `anchors` (real, fake) when given. Returns D's loss, mean D(x)
    and D(G(z)) as probabilities, its accuracy on each side, and the raw means and E[sign D(x)]
    the adaptive regularisers follow, as 0-d tensors on the device (no host sync)."""
    policy = parse_policy(cfg.diffaug)
    real_in = diff_augment(real, policy, p)
    if r1:  # R1 differentiates D's output on the real images D sees (augmented ones)
        real_in = real_in.detach().requires_grad_(True)
    d_real = D(real_in, y_real)
    d_fake = D(diff_augment(fake.detach(), policy, p), y_fake)
    loss = d_loss(d_real, d_fake, cfg.loss, cfg.label_smoothing, cfg.label_noise)
    total = loss
    if r1:  # weighted by r1_every: one penalty stands for the r1_every steps it skipped
        total = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1_penalty(d_real, real_in)
    if anchors is not None:
        total = total + cfg.lecam * lecam_penalty(d_real, d_fake, *anchors)
    opt_d.zero_grad(set_to_none=True)
    total.backward()
    opt_d.step()
    with torch.no_grad():
        d_r, d_f = d_real.float(), d_fake.float()
        return {
            "d_loss": loss.detach().float(),
            "d_real": torch.sigmoid(d_r).mean(),
            "d_fake": torch.sigmoid(d_f).mean(),
            "d_acc_real": (d_r > 0).float().mean(),
            "d_acc_fake": (d_f < 0).float().mean(),
            "raw_real": d_r.mean(),
            "raw_fake": d_f.mean(),
            "sign_real": d_r.sign().mean(),
        }


def g_step(G, D, opt_g, fake, y_fake, cfg: Config, p: torch.Tensor | None = None) -> torch.Tensor:
    """One G update through a frozen D (seed 000): D gets no gradients and its weights stay put."""
    D.requires_grad_(False)
    try:
        loss = g_loss(D(diff_augment(fake, parse_policy(cfg.diffaug), p), y_fake), cfg.loss)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return loss.detach()


def ema_beta(cfg: Config, step: int, total_steps: int = 0) -> float:
    """The EMA decay after G step `step` (1-based) of a run of `total_steps` G steps."""
    if cfg.ema_horizon > 0:
        # a half-life of a fixed share of the run: the same averaging at 10 or 1000 epochs
        half_life = cfg.ema_horizon * max(total_steps, 1)
        if cfg.ema_rampup > 0:
            half_life = min(half_life, cfg.ema_rampup * step)
        return 0.5 ** (1.0 / max(half_life, 1e-8))
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


def train_epoch(
    nets: Nets,
    real: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: Config,
    *,
    step: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> EpochResult:
    """One pass over the device-resident uint8 `real` (and its labels, for a conditional G) in
    shuffled batches: per batch, one D step and (every d_steps batches) one G step and EMA update.
    The stats stay on the device until the epoch's one host sync at the end."""
    G, D = nets.G, nets.D
    device = real.device
    n, B = real.shape[0], cfg.batch_size
    perm = torch.randperm(n).to(device)  # the global CPU RNG: saved in checkpoints for exact resume
    n_cls = G.num_classes
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    sums = {k: torch.zeros((), device=device) for k in STATS}
    ds = nets.d_state
    ada = ds is not None and cfg.ada_target > 0
    p = torch.tensor(ds.ada_p, device=device) if ada else None
    signs = torch.zeros((), device=device)  # E[sign D(x)] summed over ADA_INTERVAL steps
    ada_step = B * ADA_INTERVAL / ADA_IMAGES
    lecam = ds is not None and cfg.lecam > 0
    if lecam:
        anchors = (
            torch.tensor(ds.lecam_real, device=device),
            torch.tensor(ds.lecam_fake, device=device),
        )
    steps = n // B  # drop the last partial batch: BatchNorm misbehaves on tiny batches
    total = cfg.epochs * steps // cfg.d_steps  # the run's G steps (ema_horizon's unit)
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
            # D: real vs fake; G's graph is kept only when G steps on this batch
            with torch.set_grad_enabled(do_g):
                fake = G(z, y_fake)
            r1 = cfg.r1_gamma > 0 and i % cfg.r1_every == 0
            out = d_step(
                D, nets.opt_d, x, fake, y_real, y_fake, cfg, r1, p, anchors if lecam else None
            )
            for k in STATS[:1] + STATS[2:]:
                sums[k] += out[k]
            if ada:  # ADA: more augmentation while D calls too many real images real
                signs += out["sign_real"]
                if (i + 1) % ADA_INTERVAL == 0:
                    p = (p + torch.sign(signs / ADA_INTERVAL - cfg.ada_target) * ada_step).clamp(
                        0, 1
                    )
                    signs.zero_()
            if lecam:  # the anchors follow D's mean outputs
                anchors = (
                    torch.lerp(anchors[0], out["raw_real"], 1 - LECAM_DECAY),
                    torch.lerp(anchors[1], out["raw_fake"], 1 - LECAM_DECAY),
                )
            # G: fool the frozen D, then move G_ema towards G
            if do_g:
                # g_loss is the mean over G steps: d_steps batches per G step
                g = g_step(G, D, nets.opt_g, fake, y_fake, cfg, p)
                sums["g_loss"] += g.float() * cfg.d_steps
                step += 1
                if nets.G_ema is not None:
                    ema_update(nets.G_ema, G, ema_beta(cfg, step, total))
        if progress is not None:
            progress(i + 1, steps)
    means = (torch.stack([sums[k] for k in STATS]) / max(steps, 1)).tolist()  # the host sync
    stats = dict(zip(STATS, means, strict=True))
    if ada:
        ds.ada_p = float(p)
        stats["ada_p"] = ds.ada_p
    if lecam:
        ds.lecam_real, ds.lecam_fake = float(anchors[0]), float(anchors[1])
    return EpochResult(stats, steps * B, step)
