"""Trial packing: the aggregate img/s of 1, 2, 4 and 8 trial processes sharing one GPU, what
Ray's fractional GPUs (`{"gpu": 0.25}`) do; plain processes, no Ray. `python -m bench packing`
(GPU only: a CPU-only machine records the row as pending)."""

from __future__ import annotations

import multiprocessing as mp
import time

import torch


def _packed_trial(args) -> float:
    """One trial process: train epochs of the fmnist model for `seconds`; returns its img/s."""
    overrides, seconds, start = args
    from gan.config import load_config
    from gan.data import load_split
    from gan.device import resolve_device
    from gan.models import build_models
    from gan.steps import Nets, train_epoch

    cfg = load_config(preset="fmnist", overrides=["conditional=false", *overrides])
    dev = resolve_device(cfg.device)
    real = load_split(cfg, "train").images.to(dev)
    G, D = (m.to(dev) for m in build_models(cfg))
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    nets = Nets(G, D, opt_g, opt_d)
    train_epoch(nets, real[: 2 * cfg.batch_size], None, cfg)
    while time.time() < start:  # all trials start together
        time.sleep(0.01)
    seen, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n = train_epoch(nets, real, None, cfg).images
        seen += n
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def bench_packing(counts=(1, 2, 4, 8), seconds: float = 20.0, data_dir: str = "data") -> list[dict]:
    """Aggregate img/s of 1, 2, 4, 8 trial processes sharing one GPU (what Ray's 0.25 GPU does)."""
    overrides = ("limit=4096", "device=cuda", f"data_dir={data_dir}")
    rows, ctx = [], mp.get_context("spawn")
    for k in counts:
        with ctx.Pool(k) as pool:
            start = time.time() + 15 + 3 * k  # time for every process to load and warm up
            rates = pool.map(_packed_trial, [(overrides, seconds, start)] * k)
        rows.append({"trials": k, "aggregate_img_s": sum(rates), "per_trial_img_s": sum(rates) / k})
    base = rows[0]["aggregate_img_s"]
    for r in rows:
        r["vs_one_trial"] = r["aggregate_img_s"] / base
    return rows


def run(args) -> list[dict] | str:
    """The packing rows on a GPU (--quick: 5 s a count), else a pending note."""
    if torch.cuda.is_available():
        out = bench_packing(seconds=5 if args.quick else 20, data_dir=args.data_dir)
    else:
        out = "pending: needs a GPU (trials per GPU); none on this machine"
    print(f"packing: {out}", flush=True)
    return out
