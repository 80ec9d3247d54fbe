"""GAN losses on D's logits: non-saturating BCE (with smoothed / noisy labels) and hinge; R1 and
LeCam, D's regularisers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_targets(n: int, real: bool, smoothing: float, noise: float, device) -> torch.Tensor:
    """D's targets: 1 - smoothing for real, 0 for fake, each flipped with probability `noise`."""
    t = torch.full((n,), 1.0 - smoothing if real else 0.0, device=device)
    if noise > 0:  # noisy labels (seed 000): D is told the wrong answer now and then
        flip = torch.rand(n, device=device) < noise
        t = torch.where(flip, (0.0 if real else 1.0 - smoothing) * torch.ones_like(t), t)
    return t


def d_loss(
    d_real: torch.Tensor,
    d_fake: torch.Tensor,
    kind: str = "bce",
    smoothing: float = 0.0,
    noise: float = 0.0,
) -> torch.Tensor:
    """Discriminator loss from logits on real and fake batches."""
    if kind == "hinge":
        return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
    t_real = d_targets(d_real.shape[0], True, smoothing, noise, d_real.device)
    t_fake = d_targets(d_fake.shape[0], False, smoothing, noise, d_fake.device)
    return F.binary_cross_entropy_with_logits(
        d_real.float(), t_real
    ) + F.binary_cross_entropy_with_logits(d_fake.float(), t_fake)


def g_loss(d_fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator loss: non-saturating -log D(G(z)) for bce, -D(G(z)) for hinge."""
    if kind == "hinge":
        return -d_fake.float().mean()
    return F.binary_cross_entropy_with_logits(
        d_fake.float(), torch.ones_like(d_fake, dtype=torch.float)
    )


def r1_penalty(d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E |grad_x D(x)|^2 on real images, differentiable in D's weights;
    `real` must require grad and d_real = D(real). The caller weights it by gamma / 2."""
    (grad,) = torch.autograd.grad(d_real.float().sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def lecam_penalty(
    d_real: torch.Tensor, d_fake: torch.Tensor, anchor_real: torch.Tensor, anchor_fake: torch.Tensor
) -> torch.Tensor:
    """LeCam (Tseng et al. 2021): D's outputs on real images held from rising above the anchor
    of its fake outputs, and on fakes from falling below the anchor of its real ones (anchors:
    EMAs of D's mean outputs), which bounds how far apart D can push a small training set."""
    return (
        F.relu(d_real.float() - anchor_fake).square().mean()
        + F.relu(anchor_real - d_fake.float()).square().mean()
    )
