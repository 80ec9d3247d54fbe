"""How far each hot path is from the machine: FLOPs per image (torch.utils.flop_counter, matmuls
and convolutions), the FLOP/s achieved, and that over the peak measured in the same run (a large
fp32 matmul on a CPU; bf16 and tf32 on a GPU).

Rows: a training step of the fmnist and seed001-v2 presets (gan's train_epoch, on a resident
slice) and of the textbook DCGAN (its own loop and DataLoader, bench/textbook_dcgan.py), and FID
feature extraction (torch-fidelity's Inception at 299 px). `python -m bench mfu`."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def _best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_flops(device: torch.device) -> dict:
    """FLOP/s of a large matmul: fp32 on a CPU; bf16 and tf32 on a GPU (best of several). The
    TF32 switch is put back as it was, so that later rows run as configured."""
    n = 2048 if device.type == "cpu" else 8192
    if device.type == "cpu":
        kinds = {"fp32": torch.float32}
    else:
        kinds = {"bf16": torch.bfloat16, "tf32": torch.float32}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    out = {}
    try:
        for name, dtype in kinds.items():
            torch.backends.cuda.matmul.allow_tf32 = name == "tf32" or tf32
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)

            def mm(a=a, b=b):
                for _ in range(4):
                    a @ b
                if device.type == "cuda":
                    torch.cuda.synchronize()

            mm()
            out[name] = 4 * 2 * n**3 / _best_seconds(mm, 5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return out


def count(fn) -> tuple[int, int]:
    """FLOPs of matmuls and convolutions (forward and backward) that fn runs: all, and those of
    the convolutions alone."""
    with FlopCounterMode(display=False) as counter:
        fn()
    conv = sum(v for k, v in counter.get_flop_counts()["Global"].items() if "conv" in str(k))
    return counter.get_total_flops(), conv


def conv_seconds(fn, device: torch.device) -> tuple[float, float]:
    """Seconds fn spends in convolution kernels (forward and backward, transposed included),
    and in all, from one run under torch.profiler (device time on a GPU)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
    # the operators only (their own time; on a GPU the kernels they launched): kernel events
    # are listed too, under names that do not say conv, and would count twice
    events = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU]
    if device.type == "cuda":
        attr = next(
            a for a in ("self_device_time_total", "self_cuda_time_total") if hasattr(events[0], a)
        )
    else:
        attr = "self_cpu_time_total"
    conv = sum(getattr(e, attr) for e in events if "conv" in e.key.lower())
    return conv / 1e6, sum(getattr(e, attr) for e in events) / 1e6


def gan_step(preset: str, data_dir: str, device: torch.device, n_images: int) -> dict:
    """FLOPs per image of one train_epoch step of a preset, and its img/s on n_images."""
    from gan.config import load_config
    from gan.data import load_split
    from gan.models import build_models
    from gan.steps import Nets, train_epoch

    cfg = load_config(
        preset=preset,
        overrides=[
            f"limit={n_images}",
            f"data_dir={data_dir}",
            f"device={device.type}",
            "conditional=false",  # the step without labels, as the textbook's
        ],
    )
    real = load_split(cfg, "train").images.to(device)
    torch.manual_seed(0)
    G, D = (m.to(device, memory_format=torch.channels_last) for m in build_models(cfg))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    nets = Nets(G, D, opt_g, opt_d)
    B = cfg.batch_size
    flops, conv = count(lambda: train_epoch(nets, real[:B], None, cfg))  # one D and one G step
    train_epoch(nets, real[: 4 * B], None, cfg)  # warm-up
    seconds = _best_seconds(lambda: train_epoch(nets, real, None, cfg), 1)  # reads stats back
    some = real[: 16 * B]
    in_conv = conv_seconds(lambda: train_epoch(nets, some, None, cfg), device)
    return _row(flops / B, conv / B, (len(real) // B) * B / seconds, B, in_conv, len(some) // B * B)


def _row(flops, conv_flops, img_s, batch, in_conv, profiled) -> dict:
    """A row: FLOPs per image, img/s, and the convolutions' share of the time and their own
    FLOP/s (their FLOPs over the kernel seconds of `profiled` images)."""
    conv_s, total_s = in_conv
    return {
        "flops_per_image": flops,
        "img_s": img_s,
        "batch": batch,
        "conv_flops_per_image": conv_flops,
        "conv_time_share": conv_s / total_s,
        "conv_achieved_flops": conv_flops * profiled / conv_s,
    }


def textbook_step(data_dir: str, device: torch.device, n_images: int) -> dict:
    """FLOPs per image of the textbook DCGAN's step, and its img/s (its own loop)."""
    from bench.textbook_dcgan import Textbook
    from gan.config import make_config
    from gan.data import load_split

    images = load_split(make_config({"data_dir": data_dir, "limit": n_images}), "train").images
    tb = Textbook(images[:, 0].numpy(), device=str(device))
    B = tb.batch_size
    one = Textbook(images[:B, 0].numpy(), device=str(device), workers=0)
    flops, conv = count(one.train_epoch)
    tb.train_epoch()  # warm-up: the DataLoader's workers start
    seconds = _best_seconds(tb.train_epoch, 1)
    some = Textbook(images[: 16 * B, 0].numpy(), device=str(device), workers=0)
    some.train_epoch()
    in_conv = conv_seconds(some.train_epoch, device)
    return _row(flops / B, conv / B, len(images) / seconds, B, in_conv, len(some.loader.dataset))


def fid_extraction(
    weights: Path, device: torch.device, n: int = 64, compiled: bool = False
) -> dict:
    """FLOPs per image of torch-fidelity's Inception on uint8 28 px images (resized to 299 px
    inside), and its img/s; `compiled`: as fid_compile runs it (compiled before the timing)."""
    from gan.extractors import Weights, extract, inception

    fe = inception(Weights(str(weights), "bench", False), device)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    flops, conv = count(lambda: extract(fe, x[:8]))
    if compiled:
        fe = inception(Weights(str(weights), "bench", False), device, compiled=True)
    extract(fe, x)
    seconds = _best_seconds(lambda: extract(fe, x), 2)
    in_conv = conv_seconds(lambda: extract(fe, x), device)
    return _row(flops / 8, conv / 8, n / seconds, n, in_conv, n)


def bench_mfu(
    data_dir: str, weights: Path, n_images: int = 2048, device: str = "cpu", compiled: bool = True
) -> dict:
    """Every row; `compiled`: also the fid_compile extraction (a compile of Inception; --quick
    leaves it out, its fid row times fid_compile already)."""
    dev = torch.device(device)
    peak = peak_flops(dev)
    ref = max(peak.values())
    rows = {
        "fmnist training step": gan_step("fmnist", data_dir, dev, n_images),
        "seed001-v2 training step": gan_step("seed001-v2", data_dir, dev, n_images),
        "textbook DCGAN training step": textbook_step(data_dir, dev, n_images),
        "FID feature extraction (Inception, 299 px)": fid_extraction(weights, dev),
    }
    if compiled:
        rows["FID feature extraction, fid_compile"] = fid_extraction(weights, dev, compiled=True)
    for r in rows.values():
        r["achieved_flops"] = r["flops_per_image"] * r["img_s"]
        r["mfu"] = r["achieved_flops"] / ref
        r["conv_mfu"] = r["conv_achieved_flops"] / ref
    return {"device": str(dev), "peak_flops": peak, "rows": rows}


def run(args) -> dict:
    """Every row on this machine's GPU, else its CPU (--quick: 512 images, no compiled row)."""
    from bench.inception import fid_weights

    weights, _ = fid_weights(Path(args.data_dir))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = bench_mfu(args.data_dir, weights, 512 if args.quick else 2048, dev, not args.quick)
    for name, r in out["rows"].items():
        print(
            f"mfu {name}: {r['flops_per_image'] / 1e6:.1f} MFLOP/img, {r['img_s']:.0f} img/s, "
            f"{r['achieved_flops'] / 1e9:.2f} GFLOP/s, {r['mfu']:.1%} of peak; convolutions "
            f"{r['conv_time_share']:.0%} of the time at {r['conv_mfu']:.1%} of peak",
            flush=True,
        )
    return out
