"""Training throughput: gan's loop against a textbook DataLoader loop of the same model.

The reference is the loop of pytorch/examples dcgan/main.py: a torchvision dataset decoded per
image through PIL transforms, a DataLoader with 2 workers, separate backward passes for the
real and fake halves of D's loss, D not frozen during the G step, and `.item()` on every step.
Both run the same G and D (the `fmnist` preset's model) on the same images in the same process;
the textbook loop runs the residual blocks as they are written in SNGAN's code (`plain_blocks`:
upsample then convolve, convolve then pool), gan's loop as gan.resnet computes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan.checkpoint import resolve_device
from gan.config import load_config
from gan.data import load_split
from gan.models import build_models
from gan.resnet import DBlock, GBlock
from gan.steps import Nets, train_epoch


def _plain_g(self: GBlock, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    h = F.relu(self.bn1(x, y) if self.cond else self.bn1(x))
    h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
    h = self.conv2(F.relu(self.bn2(h, y) if self.cond else self.bn2(h)))
    return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _plain_d(self: DBlock, x: torch.Tensor) -> torch.Tensor:
    h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
    if not self.down:
        return h + self.skip(x)
    if self.first:
        return F.avg_pool2d(h, 2) + self.skip(F.avg_pool2d(x, 2))
    return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


@contextlib.contextmanager
def plain_blocks() -> Iterator[None]:
    """Within: the residual blocks run as SNGAN's code writes them (nearest upsampling, then a
    3x3 conv; a 3x3 conv, then average pooling; the shortcut conv on the full-size side), the
    same function and parameters as gan.resnet's fused blocks."""
    saved = GBlock.forward, DBlock.forward
    GBlock.forward, DBlock.forward = _plain_g, _plain_d
    try:
        yield
    finally:
        GBlock.forward, DBlock.forward = saved


class TextbookDataset(torch.utils.data.Dataset):
    """Images kept as numpy arrays, converted per item like torchvision's MNIST datasets."""

    def __init__(self, images: np.ndarray, size: int):
        import torchvision.transforms as T

        self.images = images
        self.tf = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize((0.5,), (0.5,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.images[i], mode=None)), 0


def textbook_epoch(G, D, opt_g, opt_d, loader, latent_dim: int, device) -> int:
    """One epoch of the pytorch/examples dcgan loop; returns the images seen."""
    seen = 0
    for real, _ in loader:
        real = real.to(device)
        b = real.size(0)
        # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
        D.zero_grad()
        out = D(real)
        err_real = F.binary_cross_entropy_with_logits(out, torch.ones(b, device=device))
        err_real.backward()
        fake = G(torch.randn(b, latent_dim, device=device))
        out = D(fake.detach())
        err_fake = F.binary_cross_entropy_with_logits(out, torch.zeros(b, device=device))
        err_fake.backward()
        opt_d.step()
        # (2) update G: maximize log(D(G(z)))
        G.zero_grad()
        out = D(fake)
        err_g = F.binary_cross_entropy_with_logits(out, torch.ones(b, device=device))
        err_g.backward()
        opt_g.step()
        _ = (err_real + err_fake).item(), err_g.item()  # the per-step logging sync
        seen += b
    return seen


def bench_train(
    n_images: int = 10_000,
    epochs: int = 2,
    preset: str = "fmnist",
    overrides: tuple[str, ...] = (),
    device: str = "auto",
    compiled: bool = False,
) -> dict:
    """img/s of gan's train_epoch and of the textbook loop (best of `epochs` epochs each); with
    `compiled`, also gan's loop as `compile=true` runs it (after a warm-up that compiles)."""
    cfg = load_config(
        preset=preset,
        # without labels, as the textbook loop has none (the preset is class-conditional)
        overrides=[f"limit={n_images}", f"device={device}", "conditional=false", *overrides],
    )
    dev = resolve_device(cfg.device)
    data = load_split(cfg, "train")
    results = {}

    torch.manual_seed(0)
    G, D = (m.to(dev) for m in build_models(cfg))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    ds = TextbookDataset(
        data.images[:, 0].numpy() if cfg.channels == 1 else data.images.permute(0, 2, 3, 1).numpy(),
        cfg.image_size,
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, shuffle=True, num_workers=2, drop_last=True
    )
    best = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        with plain_blocks():
            seen = textbook_epoch(G, D, opt_g, opt_d, loader, cfg.latent_dim, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, seen / (time.perf_counter() - t0))
    results["textbook_img_s"] = best

    real = data.images.to(dev)
    results["gan_img_s"] = _gan_img_s(cfg, real, epochs, compiled=False)
    if cfg.arch == "resnet":  # gan's loop alone: the blocks as the textbook runs them
        with plain_blocks():
            results["gan_plain_blocks_img_s"] = _gan_img_s(cfg, real, epochs, compiled=False)
        results["speedup_plain_blocks"] = (
            results["gan_plain_blocks_img_s"] / results["textbook_img_s"]
        )
    if compiled:
        results["gan_compiled_img_s"] = _gan_img_s(cfg, real, epochs, compiled=True)
        results["speedup_compiled"] = results["gan_compiled_img_s"] / results["textbook_img_s"]
    results["speedup"] = results["gan_img_s"] / results["textbook_img_s"]
    results.update(
        n_images=n_images,
        batch_size=cfg.batch_size,
        arch=cfg.arch,
        width=cfg.width,
        image_size=cfg.image_size,
        device=str(dev),
        epochs_each=epochs,
    )
    return results


def _gan_img_s(cfg, real: torch.Tensor, epochs: int, compiled: bool) -> float:
    """Best img/s of gan's train_epoch over `epochs` epochs of `real`, EMA off (the textbook loop
    has none); `compiled`: G and D as train() compiles them (D eager under spectral norm)."""
    from gan.train import compile_d, maybe_compile

    dev = real.device
    torch.manual_seed(0)
    G, D = (m.to(dev) for m in build_models(cfg))
    G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    if compiled:
        cfg = dataclasses.replace(cfg, compile=True)
        G, D = maybe_compile(G, True), maybe_compile(D, compile_d(cfg))
        train_epoch(Nets(G, D, opt_g, opt_d), real[: 4 * cfg.batch_size], None, cfg)  # compiles
    best, step = 0.0, 0
    for _ in range(epochs):
        t0 = time.perf_counter()
        result = train_epoch(Nets(G, D, opt_g, opt_d), real, None, cfg, step=step)
        seen, step = result.images, result.step  # stats are read back: the epoch's host sync
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, seen / (time.perf_counter() - t0))
    return best


def bench_growth(
    sizes=(28, 64, 100), counts=(10_000, 60_000, 200_000), steps: int = 20, device: str = "auto"
) -> list[dict]:
    """Seconds per epoch at several image sizes and dataset sizes (the fmnist preset's model).

    For each size, the largest set is held on the device (Fashion-MNIST tiled past its 70k images)
    and `steps` real training steps are timed after 2 warm-up steps; an epoch's cost is that step
    time times its step count, since in-memory batches cost the same whatever the set's size.
    """
    rows = []
    for size in sizes:
        overrides = [f"image_size={size}", f"device={device}", "conditional=false"]
        cfg = load_config(preset="fmnist", overrides=overrides)
        dev = resolve_device(cfg.device)
        base = load_split(cfg, "train").images
        images = base.repeat(-(-max(counts) // len(base)), 1, 1, 1)[: max(counts)].to(dev)
        torch.manual_seed(0)
        G, D = (m.to(dev) for m in build_models(cfg))
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        B = cfg.batch_size
        nets = Nets(G, D, opt_g, opt_d)
        train_epoch(nets, images[: 2 * B], None, cfg)  # warm-up
        idx = torch.randint(0, len(images), (steps * B,), device=dev)
        t0 = time.perf_counter()
        train_epoch(nets, images[idx], None, cfg)
        per_step = (time.perf_counter() - t0) / steps
        for count in counts:
            rows.append(
                {
                    "image_size": size,
                    "images": count,
                    "steps_timed": steps,
                    "s_per_step": per_step,
                    "s_per_epoch": per_step * (count // B),
                }
            )
        del images
    return rows
