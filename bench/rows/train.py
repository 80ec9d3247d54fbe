"""Training throughput: gan's loop against a textbook DataLoader loop of the same model.

The reference is the loop of pytorch/examples dcgan/main.py: a torchvision dataset decoded per
image through PIL transforms, a DataLoader with 2 workers, separate backward passes for the
real and fake halves of D's loss, D not frozen during the G step, and `.item()` on every step.
Both run the same G and D (the `fmnist` preset's model) on the same images in the same process;
the textbook loop runs the residual blocks as they are written in SNGAN's code (gan.resnet's
fused=False: upsample then convolve, convolve then pool), gan's loop as gan.resnet computes them
by default. `python -m bench train`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan.config import load_config
from gan.data import load_split
from gan.device import resolve_device
from gan.models import build_models
from gan.resnet import set_fused
from gan.steps import Nets, train_epoch


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
    G, D = (set_fused(m.to(dev), False) for m in build_models(cfg))  # the blocks as SNGAN's code
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
        seen = textbook_epoch(G, D, opt_g, opt_d, loader, cfg.latent_dim, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, seen / (time.perf_counter() - t0))
    results["textbook_img_s"] = best

    real = data.images.to(dev)
    results["gan_img_s"] = _gan_img_s(cfg, real, epochs, compiled=False)
    if cfg.arch == "resnet":  # gan's loop alone: the blocks as the textbook runs them
        results["gan_plain_blocks_img_s"] = _gan_img_s(cfg, real, epochs, False, fused=False)
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


def _gan_img_s(cfg, real: torch.Tensor, epochs: int, compiled: bool, fused: bool = True) -> float:
    """Best img/s of gan's train_epoch over `epochs` epochs of `real`, EMA off (the textbook loop
    has none); `compiled`: G and D as train() compiles them (D eager under spectral norm);
    fused=False: the residual blocks run plain."""
    from gan.train import compile_d, maybe_compile

    dev = real.device
    torch.manual_seed(0)
    G, D = (
        set_fused(m.to(dev, memory_format=torch.channels_last), fused) for m in build_models(cfg)
    )
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


def run(args) -> list[dict]:
    """The fmnist preset's residual pair and the width-64 DCGAN it replaced, each against the
    textbook loop of the same model (--quick: 1024 images, one epoch each)."""
    q, data = args.quick, f"data_dir={args.data_dir}"
    n = 1024 if q else 10_000
    dcgan64 = ("arch=dcgan", "width=64", "batch_size=128", "spectral_norm=true")
    out = []
    for label, overrides in [
        ("fmnist preset", (data,)),
        ("dcgan width 64, batch 128", (data, *dcgan64)),
    ]:
        # the preset also as compile=true runs it: G compiled, D eager under spectral norm
        r = bench_train(n, 1 if q else 2, overrides=overrides, compiled=label == "fmnist preset")
        r["model"] = f"{label} ({r['arch']}, width {r['width']}, batch {r['batch_size']})"
        out.append(r)
        print(
            f"train {r['model']}: gan {r['gan_img_s']:.0f} img/s, textbook "
            f"{r['textbook_img_s']:.0f} img/s, x{r['speedup']:.2f}"
            + (
                f"; loop alone (plain blocks) {r['gan_plain_blocks_img_s']:.0f} img/s, "
                f"x{r['speedup_plain_blocks']:.2f}"
                if "gan_plain_blocks_img_s" in r
                else ""
            )
            + (
                f"; compiled {r['gan_compiled_img_s']:.0f} img/s, x{r['speedup_compiled']:.2f}"
                if "gan_compiled_img_s" in r
                else ""
            ),
            flush=True,
        )
    return out
