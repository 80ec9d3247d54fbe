"""A small CNN classifier of the real images: its penultimate features and predictions give the
offline in-domain metrics (fd_domain, class coverage, diversity) without any download."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gan.config import Config
from gan.data import data_key, load_split, to_float
from gan.io import cached

log = logging.getLogger(__name__)

FEATURES = 128  # size of the penultimate feature space fd_domain is measured in


class Classifier(nn.Module):
    """Two strided convs, a conv, a 4x4 pool, 128 features, class logits; any image size."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            # strided convs, not conv + max-pool: 2x cheaper on a CPU at the same accuracy
            nn.Conv2d(channels, w, 4, 2, 1),
            nn.BatchNorm2d(w),
            nn.ReLU(),  # (B, w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),  # (B, 2w, H/4, W/4)
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # (B, 4w, 4, 4) whatever the image size
            nn.Flatten(),
            nn.Linear(4 * w * 16, FEATURES),
            nn.ReLU(),  # (B, 128): the feature space of fd_domain
        )
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def noise_images(n: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """n uint8 images of pixel noise: half uniform, half Gaussian of random brightness/contrast."""
    half = n // 2
    uniform = torch.randint(0, 256, (half, *shape), dtype=torch.uint8, generator=gen)
    mean = torch.rand(n - half, 1, 1, 1, generator=gen) * 255
    std = torch.rand(n - half, 1, 1, 1, generator=gen) * 100
    gauss = torch.randn(n - half, *shape, generator=gen) * std + mean
    return torch.cat([uniform, gauss.round().clamp(0, 255).to(torch.uint8)])


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    device: torch.device | str = "cpu",
    epochs: int = 2,
    min_steps: int = 120,
    seed: int = 0,
) -> Classifier:
    """Train a Classifier on uint8 images (N, C, H, W) plus a reject class of pixel noise
    (index num_classes); the global RNG is left untouched."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    # the reject class: features trained only to tell classes apart place pixel noise near real
    # images (measured on Fashion-MNIST: closer than a 3-epoch generator's blobs); learning
    # "noise is not data" makes fd_domain rank noise far, as FID does
    noise = noise_images(max(8, len(images) // 5), tuple(images.shape[1:]), gen)
    images = torch.cat([images, noise])
    labels = torch.cat([labels, torch.full((len(noise),), num_classes, dtype=labels.dtype)])
    n = len(images)
    # big sets: 2 epochs of 256 (Fashion-MNIST: ~89% test accuracy in ~20 s on 2 idle cores);
    # small sets: smaller batches and at least min_steps updates, or it stays at chance
    batch = max(8, min(256, n // 8))
    steps = max(epochs * (n // batch), min_steps)
    # fork_rng: the caller (train()) has already seeded the global RNG for its own run
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(images.shape[1], num_classes + 1).to(device)
    perm, pos = torch.randperm(n, generator=gen), 0

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal perm, pos
        if pos + batch > n:  # next epoch: a fresh shuffle, the partial batch dropped
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + batch]
        pos += batch
        return images[idx], labels[idx]

    return fit_steps(model, draw, steps, device)


def fit_steps(model: Classifier, draw, steps: int, device: torch.device | str) -> Classifier:
    """Train `model` for `steps` batches of draw() -> (uint8 images, labels): Adam under a
    one-cycle schedule peaking at 4e-3. Returns it in eval mode."""
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    model.train()
    for _ in range(steps):
        images, labels = draw()
        x, y = to_float(images.to(device)), labels.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, 128), logits (B, K)) on the CPU for a uint8 batch; model in eval mode."""
    device = next(model.parameters()).device
    f = model.body(to_float(images.to(device)))
    return f.float().cpu(), model.head(f).float().cpu()


@torch.no_grad()
def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000
) -> float:
    """Fraction of images whose predicted class is the label."""
    right = 0
    for i in range(0, len(images), batch):
        right += (
            (predict(model, images[i : i + batch])[1].argmax(1) == labels[i : i + batch])
            .sum()
            .item()
        )
    return right / max(1, len(images))


# -- the dataset's classifier and what its predictions tell ------------------------------------


def domain_classifier(cfg: Config, device: torch.device) -> tuple[Classifier, dict] | None:
    """The dataset's classifier, trained on its train split (as configured, limit included) on
    first use and cached under <data_dir>/cache/ with its test accuracy; None if unlabelled."""
    # used directly, not registered with torch-fidelity as a FeatureExtractorBase: Inception does
    # not go through calculate_metrics either (see gan.metrics), so registering would only add a
    # process-global name (registering twice raises) and a 3-channel uint8 round trip.
    # The split with cfg.limit, like the GAN's: a small experiment stays cheap (the whole of
    # Fashion-MNIST takes ~20 s); fd_domain compares runs on the same data settings only.
    train = load_split(cfg, "train")
    if train.labels is None:
        return None
    key = f"classifier|{data_key(cfg, 'train')}|{data_key(cfg, 'test')}"

    def fit() -> dict:
        t0 = time.perf_counter()
        model = train_classifier(train.images, train.labels, train.num_classes, device)
        test = load_split(cfg, "test")
        acc = accuracy(model, test.images, test.labels) if len(test) else float("nan")
        log.info(
            "domain classifier: %d images, %.0f s, test accuracy %.3f",
            len(train),
            time.perf_counter() - t0,
            acc,
        )
        classes = sorted(set(train.labels.tolist()))  # only the kept classes count for coverage
        return {
            "state": model.cpu().state_dict(),
            "outputs": train.num_classes + 1,  # + the reject class
            "classes": classes,
            "test_acc": acc,
        }

    saved = cached(Path(cfg.data_dir) / "cache", "classifier", key, fit)
    model = Classifier(cfg.channels, saved["outputs"])
    model.load_state_dict(saved["state"])
    return model.to(device).eval(), saved


def mean_pairwise_distance(features: torch.Tensor, limit: int = 2000) -> float:
    """Mean L2 distance between distinct samples (the first `limit`), a diversity measure."""
    f = features[:limit].double()
    n = len(f)
    if n < 2:
        return float("nan")
    return float(torch.pdist(f).mean())


def class_coverage(pred: torch.Tensor, classes: list[int]) -> dict:
    """Rarest-class share and normalized entropy of predicted classes (1.0 = perfectly even)."""
    counts = torch.tensor([(pred == c).sum().item() for c in classes], dtype=torch.float64)
    p = counts / counts.sum().clamp(min=1)
    nz = p[p > 0]
    entropy = (
        float(-(nz * nz.log()).sum() / np.log(len(classes))) + 0.0 if len(classes) > 1 else 1.0
    )
    return {"class_coverage_min": float(p.min()), "class_entropy": entropy}
