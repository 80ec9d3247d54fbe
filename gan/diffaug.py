"""DiffAugment (Zhao et al. 2020): differentiable augmentations of every image D sees.

The same policy is applied to real and fake batches, in the D step and the G step, so D cannot
tell them apart by the augmentation and G's gradients flow through it. Each op works
on a float batch (B, C, H, W) on its own device, draws per-sample parameters from the global RNG
(so a seeded run is reproducible), and is a composition of differentiable tensor ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per sample."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:  # saturation has no meaning for one channel
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to ratio x its side in x and y, filling with zeros."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy  # (B, H, 1) source rows
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx  # (B, 1, W) source columns
    # gather from a zero-padded copy: index 0 and the last index are the padding
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H + 2, W + 2)
    rows = (rows + 1).clamp(0, h + 1).expand(b, h, w)
    cols = (cols + 1).clamp(0, w + 1).expand(b, h, w)
    flat = (rows * (w + 2) + cols).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    out = padded.flatten(2).gather(2, flat)  # (B, C, H * W)
    return out.view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side ratio x the image side at a random place in each sample."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # the square's centre anywhere in the image (it may hang over an edge), as in the paper
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    top, left = cy - ch // 2, cx - cw // 2  # (B, 1, 1) each
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)  # (B, C, H, W)


OPS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> () (off)."""
    return tuple(p for p in policy.replace(" ", "").split(",") if p)


def diff_augment(
    x: torch.Tensor, policy: tuple[str, ...], p: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply the policy's ops in order (each with fresh random parameters) to a float batch;
    with a probability p (a 0-d tensor: adaptive augmentation), each op reaches each image with
    that probability, else every image. An empty policy returns x itself."""
    for name in policy:
        if p is None:
            x = OPS[name](x)
        else:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p  # (B, 1, 1, 1)
            x = torch.where(keep, x, OPS[name](x))
    return x
