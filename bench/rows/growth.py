"""Cost growth: seconds per epoch of the fmnist preset's model at several image sizes and dataset
sizes. `python -m bench growth`."""

from __future__ import annotations

import time

import torch

from gan.config import load_config
from gan.data import load_split
from gan.device import resolve_device
from gan.models import build_models
from gan.steps import Nets, train_epoch


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


def run(args) -> list[dict]:
    """28, 64 and 100 px at 10k, 60k and 200k images (--quick: 28 and 64 px, 3 steps)."""
    kw = {"sizes": (28, 64), "counts": (10_000, 60_000), "steps": 3} if args.quick else {}
    rows = bench_growth(**kw)
    for r in rows:
        print(
            f"growth {r['image_size']}px x {r['images']}: {r['s_per_epoch']:.1f} s/epoch",
            flush=True,
        )
    return rows
