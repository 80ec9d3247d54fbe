"""FID in memory with cached real statistics against the seed-004 way, same run, same N.

`bench_fid(n, weights_path)` scores one generator three ways: ours (gan.metrics: generator ->
uint8 -> Inception in memory, real statistics from the cache, eigh Frechet), seed 004's (write
n generated and n real PNGs, then torch-fidelity's FID on two folders, real statistics recomputed
each time), and that folder flow again with torch-fidelity's own cache of the real folder's
statistics (filled by the first call). All see the same images and weights, so their FIDs agree;
only the time differs. Ours also reports how much of its time Inception's forward passes take,
and runs again with `fid_compile` (torch.compile, weights frozen): its first evaluation, compile
included, and a second one in the same process, what every later evaluation of a run pays.
`python -m bench fid [--fid-n 500,5000]`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench.inception import fid_weights
from bench.rows.frechet import frechet_times
from gan.config import make_config
from gan.device import resolve_device
from gan.metrics import make_evaluator, reference
from gan.models import build_models
from gan.sampling import batches


def _write_pngs(batches, folder: Path) -> None:
    folder.mkdir(parents=True)
    i = 0
    for x in batches:  # uint8 (B, C, H, W)
        for img in x.cpu():
            arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
            Image.fromarray(arr).save(folder / f"{i:06d}.png")
            i += 1


def seed004_fid(
    G, real: torch.Tensor, n: int, weights_path, device, work: Path, cached: bool = False
) -> float:
    """Seed 004: n generated + n real PNGs on disk, torch-fidelity on the two folders. The seed
    recomputes the real statistics every time; `cached` lets torch-fidelity keep them in
    work/tf-cache (the first such call fills it)."""
    import torch_fidelity

    shutil.rmtree(work / "fake", ignore_errors=True)
    shutil.rmtree(work / "real", ignore_errors=True)
    _write_pngs((x for x, _ in batches(G, n, 64)), work / "fake")
    _write_pngs((real[i : i + 256] for i in range(0, len(real), 256)), work / "real")
    out = torch_fidelity.calculate_metrics(
        input1=str(work / "fake"),
        input2=str(work / "real"),
        fid=True,
        cuda=device.type == "cuda",
        feature_extractor_weights_path=str(weights_path),
        cache=cached,
        cache_root=str(work / "tf-cache"),
        input2_cache_name=f"bench-real-{n}" if cached else None,
        verbose=False,
    )
    return out["frechet_inception_distance"]


class ForwardTimer:
    """Seconds a module spends in its forward passes, from hooks around each call."""

    def __init__(self, module: torch.nn.Module):
        self.seconds, self._t0 = 0.0, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.seconds += time.perf_counter() - self._t0


def bench_fid(
    n: int, weights_path: str | Path, device: str = "auto", data_dir: str | None = None
) -> dict:
    """Seconds for one FID evaluation of n samples, ours vs seed 004's, and their ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-fid-") as tmp:
        return _bench(n, weights_path, resolve_device(device), data_dir, Path(tmp))


def _bench(n: int, weights_path, dev: torch.device, data_dir: str | None, work: Path) -> dict:
    cfg = make_config(
        dict(
            data_dir=data_dir or str(work / "data"),  # an existing one reuses its caches
            fid_samples=n,
            fid_weights=str(weights_path),
            metric="fid",
            width=32,
            latent_dim=64,
        )
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = build_models(cfg)[0].to(dev).eval()  # untrained: timing does not depend on quality
    make_evaluator(cfg, dev)  # fills the real-statistics cache (and trains the classifier)

    t0 = time.perf_counter()
    ev = make_evaluator(cfg, dev)  # what each later trial pays: a cache hit
    setup_s = time.perf_counter() - t0
    timer = ForwardTimer(ev.inception.net)
    t0 = time.perf_counter()
    ours = ev.evaluate(G)
    eval_s = time.perf_counter() - t0

    compiled = make_config({"fid_compile": True}, base=cfg)
    t0 = time.perf_counter()
    ev_c = make_evaluator(compiled, dev)
    fid_compiled = ev_c.evaluate(G)["fid"]
    compiled_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev_c.evaluate(G)
    compiled_s = time.perf_counter() - t0

    real = reference(cfg).images
    t0 = time.perf_counter()
    seed = seed004_fid(G, real, n, weights_path, dev, work, cached=True)  # fills tf's cache
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder_cached = seed004_fid(G, real, n, weights_path, dev, work, cached=True)
    folder_cached_s = time.perf_counter() - t0

    ours_s = setup_s + eval_s
    return {
        "n": n,
        "device": str(dev),
        "ours_s": round(ours_s, 2),
        "ours_setup_s": round(setup_s, 2),  # includes domain classifier features of the refs
        "ours_eval_s": round(eval_s, 2),
        "ours_inception_s": round(timer.seconds, 2),  # Inception's forward passes in eval
        "ours_inception_share": round(timer.seconds / ours_s, 3),
        "compiled_first_s": round(compiled_first_s, 2),  # fid_compile=true, compile included
        "compiled_s": round(compiled_s, 2),  # a later evaluation of the same process
        "seed004_s": round(seed_s, 2),
        "ratio": round(seed_s / ours_s, 2),
        "ratio_compiled_first": round(seed_s / compiled_first_s, 2),
        "ratio_compiled": round(seed_s / compiled_s, 2),
        "folder_cached_s": round(folder_cached_s, 2),
        "ratio_vs_folder_cached": round(folder_cached_s / ours_s, 2),
        "fid_ours": ours["fid"],
        "fid_compiled": fid_compiled,
        "fid_seed004": seed,
        "fid_folder_cached": folder_cached,
        "fid_standard": ours["fid_standard"],
        "fid_weights": ours["fid_weights"],
        **frechet_times(ev.inception.real),
    }


def run(args) -> list[dict]:
    """One FID evaluation at each --fid-n sample count (--quick: 50)."""
    weights, kind = fid_weights(Path(args.data_dir))
    out = []
    for n in [50] if args.quick else [int(x) for x in args.fid_n.split(",")]:
        out.append({"weights": kind, **bench_fid(n, weights, data_dir=args.data_dir)})
        print(f"fid: {json.dumps(out[-1])}", flush=True)
    return out
