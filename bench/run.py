"""`make bench`: every benchmark in one run, one table, saved as JSON under bench/results/.

Each row compares gan against a reference measured in the same run on the same machine; only
ratios and same-run numbers are reported. GPU-only rows say "pending" where no GPU is present.
Options: --quick (smaller counts, for a smoke run), --only NAME[,NAME] (train, fid, frechet,
mfu, packing, asha, search, screen, quick, growth, quality; and small, the limited-data row, hours
long, run only when named), --data-dir DIR (prepared data and
caches; default data/), --recipes (quality: which presets to curve against the textbook DCGAN;
default every Fashion-MNIST one), --epochs N (quality: curves to epoch N; a resumed bench
extends them), --jobs N (quality, search: curves trained side by side).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def _packed_trial(args) -> float:
    """One trial process: train epochs of the fmnist model for `seconds`; returns its img/s."""
    overrides, seconds, start = args
    from gan.checkpoint import resolve_device
    from gan.config import load_config
    from gan.data import load_split
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


def fid_weights(data_dir: Path) -> tuple[Path, str]:
    """Inception weights for the FID row: the standard ones when present ($GAN_FID_WEIGHTS or
    torch-fidelity's file in $TORCH_HOME), else a random-weights file of the same layout. Times
    do not depend on the weights' values; FID values from random weights are not standard FIDs,
    and the row says which it used."""
    from gan.config import make_config
    from gan.extractors import resolve_weights

    try:
        w = resolve_weights(make_config({}))
        return Path(w.path), "standard" if w.standard else f"local file {w.path}"
    except Exception as e:  # noqa: BLE001  (no file, no network)
        print(f"fid: standard Inception weights unavailable ({e}); timing with random weights")
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_fid import build_random_inception

    fmnist = Path(os.environ.get("GAN_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    path = data_dir / "cache" / "bench-random-inception.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        build_random_inception(path, fmnist)
    return path, "random, same layout (timing only; FID values non-standard)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of every row")
    every_row = "train,fid,frechet,mfu,packing,asha,search,screen,quick,growth,quality"
    p.add_argument("--only", default=every_row)
    p.add_argument("--recipes", default="", help="quality: comma-separated presets (or L=preset)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="L:KEY=VALUE",
        help="quality: a config value of recipe L (a screening variant of a preset)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="quality: epochs of every curve (default: 5 on a CPU, 30 on a GPU, 2 with --quick)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="quality, search: curves trained side by side (default: one per core on a CPU, 1 on a "
        "GPU)",
    )
    p.add_argument(
        "--fid-n",
        default="500",
        help="fid: sample counts, e.g. 500,5000 (a CPU runs Inception at ~14 img/s: 5 passes of n)",
    )
    p.add_argument(
        "--search-table",
        default="",
        help="search: the exhaustive table (table.json) of an earlier run of the same settings",
    )
    p.add_argument(
        "--search-population",
        default="pbt,pb2",
        help="search: the population methods, trained for real (pbt, pb2 or both)",
    )
    p.add_argument(
        "--sizes",
        default="1000,5000",
        help="small: training subset sizes (1,000 and 200 epochs: about 1M images seen each)",
    )
    p.add_argument(
        "--score-only",
        action="store_true",
        help="small: score the checkpoints kept so far (in ~/.cache/gan-bench), train nothing",
    )
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    args = p.parse_args()
    only = set(args.only.split(","))
    q = args.quick
    data = f"data_dir={args.data_dir}"
    out = {
        "machine": machine(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": q,
    }
    print(f"machine: {out['machine']}", flush=True)

    if "train" in only:
        from bench_train import bench_train

        n = 1024 if q else 10_000
        # the fmnist preset's own model, and the DCGAN it replaced (kept as a reference point)
        dcgan64 = ("arch=dcgan", "width=64", "batch_size=128", "spectral_norm=true")
        rows = [("fmnist preset", (data,)), ("dcgan width 64, batch 128", (data, *dcgan64))]
        out["train"] = []
        for label, overrides in rows:
            # the preset also as compile=true runs it: G compiled, D eager under spectral norm
            compiled = label == "fmnist preset"
            r = bench_train(n, 1 if q else 2, overrides=overrides, compiled=compiled)
            r["model"] = f"{label} ({r['arch']}, width {r['width']}, batch {r['batch_size']})"
            out["train"].append(r)
        for r in out["train"]:
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
    if "fid" in only:
        from bench_fid import bench_fid

        weights, kind = fid_weights(Path(args.data_dir))
        out["fid"] = []
        for n in [50] if q else [int(x) for x in args.fid_n.split(",")]:
            row = {"weights": kind, **bench_fid(n, weights, data_dir=args.data_dir)}
            out["fid"].append(row)
            print(f"fid: {json.dumps(row)}", flush=True)
    if "frechet" in only:
        from bench_fid import frechet_scaling

        out["frechet"] = frechet_scaling((500, 2048) if q else (500, 2048, 5000, 10000))
        for r in out["frechet"]:
            print(
                f"frechet n={r['n']} ({r['path']}): ours {r['ours_s']} s, eigvals "
                f"{r['eigvals_s']} s, x{r['ratio_vs_eigvals']}",
                flush=True,
            )
    if "mfu" in only:
        from bench_mfu import bench_mfu

        weights, _ = fid_weights(Path(args.data_dir))
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        out["mfu"] = bench_mfu(args.data_dir, weights, 512 if q else 2048, dev, not q)
        for name, r in out["mfu"]["rows"].items():
            print(
                f"mfu {name}: {r['flops_per_image'] / 1e6:.1f} MFLOP/img, {r['img_s']:.0f} img/s, "
                f"{r['achieved_flops'] / 1e9:.2f} GFLOP/s, {r['mfu']:.1%} of peak; convolutions "
                f"{r['conv_time_share']:.0%} of the time at {r['conv_mfu']:.1%} of peak",
                flush=True,
            )
    if "packing" in only:
        if torch.cuda.is_available():
            out["packing"] = bench_packing(seconds=5 if q else 20, data_dir=args.data_dir)
        else:
            out["packing"] = "pending: needs a GPU (trials per GPU); none on this machine"
        print(f"packing: {out['packing']}", flush=True)
    if "search" in only:
        from bench_search import bench_search

        # 27 configs x max_t 9 (--quick: 3) on quick.yaml's 8192 images, trained once (or an
        # earlier run's table); random+ASHA and Optuna+ASHA replay the measured curves through
        # real Ray experiments (10 seeds: seconds each); PBT and PB2 train for real
        out["search"] = bench_search(
            limit=512 if q else 8192,
            max_t=3 if q else 9,
            seeds=1 if q else 10,
            data_dir=args.data_dir,
            table_file=args.search_table,
            jobs=args.jobs or os.cpu_count() or 1,
            populations=tuple(args.search_population.split(",")),
        )
    if "asha" in only:
        from bench_asha import bench_asha

        out["asha"] = bench_asha(ROOT / "tune_configs" / "quick.yaml")
        print(f"asha: {json.dumps(out['asha'])}", flush=True)
    if "screen" in only:
        from bench_screen import bench_screen

        # single trials at the quick tune's budget: what quick.yaml was derived from
        out["screen"] = bench_screen(ROOT / "runs" / "bench-screen", args.data_dir)
    if "quick" in only:
        from bench_quick import bench_quick

        # today's tune_configs/quick.yaml against the one it replaced (bench/quick-before.yaml)
        out["quick"] = bench_quick()
        print(f"quick: fd_domain x{out['quick']['fd_domain_ratio']:.2f}", flush=True)
    if "growth" in only:
        from bench_train import bench_growth

        kw = {"sizes": (28, 64), "counts": (10_000, 60_000), "steps": 3} if q else {}
        out["growth"] = bench_growth(**kw)
        for r in out["growth"]:
            print(
                f"growth {r['image_size']}px x {r['images']}: {r['s_per_epoch']:.1f} s/epoch",
                flush=True,
            )
    if "quality" in only:
        from bench_quality import PRESETS, bench_quality, parse_sets

        # CPU: epochs 1-5 (--quick 1-2); GPU: 1-30. Checkpoints under runs/bench-quality/ let an
        # interrupted bench resume; the same seed on the CPU gives the same curve on a rerun.
        gpu = torch.cuda.is_available()
        epochs = args.epochs or (2 if q else (30 if gpu else 5))
        recipes = args.recipes.split(",") if args.recipes else list(PRESETS)
        out["quality"] = bench_quality(
            recipes,
            epochs,
            ROOT / "runs" / "bench-quality",
            args.data_dir,
            "cuda" if gpu else "cpu",
            parse_sets(args.set),
            args.jobs or (1 if gpu else os.cpu_count() or 1),
        )

    if "small" in only:
        from bench_quality import parse_sets
        from bench_small import DEFAULT, bench_small, work_dir

        # hours on a CPU; runs and scores kept under ~/.cache/gan-bench (GAN_BENCH_WORK) resume
        gpu = torch.cuda.is_available()
        sizes = [int(x) for x in args.sizes.split(",")]
        out["small"] = bench_small(
            sizes,
            args.recipes.split(",") if args.recipes else list(DEFAULT),
            work_dir() / ("small-quick" if q else "small"),
            args.data_dir,
            "cuda" if gpu else "cpu",
            parse_sets(args.set),
            args.jobs or (1 if gpu else os.cpu_count() or 1),
            {n: 2 for n in sizes} if q else None,
            training=not args.score_only,
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "gpu" if out["machine"]["gpu"] else "cpu"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{kind}-{'quick-' if q else ''}{stamp}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
