"""FID in memory with cached real statistics against the seed-004 way, same run, same N.

`bench_fid(n, weights_path)` scores one generator three ways: ours (gan.metrics: generator ->
uint8 -> Inception in memory, real statistics from the cache, eigh Frechet), seed 004's (write
n generated and n real PNGs, then torch-fidelity's FID on two folders, real statistics recomputed
each time), and that folder flow again with torch-fidelity's own cache of the real folder's
statistics (filled by the first call). All see the same images and weights, so their FIDs agree;
only the time differs. Ours also reports how much of its time Inception's forward passes take,
and runs again with `fid_compile` (torch.compile, weights frozen): its first evaluation, compile
included, and a second one in the same process, what every later evaluation of a run pays.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/bench_fid.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_fidelity  # noqa: E402
from PIL import Image  # noqa: E402

from gan.checkpoint import resolve_device  # noqa: E402
from gan.config import make_config  # noqa: E402
from gan.frechet import fd_to, frechet_distance, gaussian  # noqa: E402
from gan.metrics import make_evaluator, reference  # noqa: E402
from gan.models import build_models  # noqa: E402
from gan.sampling import batches  # noqa: E402


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


def three_ways(real: dict, fake_x: torch.Tensor) -> dict:
    """Seconds of the Frechet step from fake features (N, D) to a distance, the fake mean and
    covariance included, three ways: torch-fidelity's eigvals of s1 s2, the exact eigh form
    without a cache, and ours (cached real root; an N x N problem when N <= D); and the largest
    relative difference between their distances."""
    t0 = time.perf_counter()
    f = gaussian(fake_x)
    tr = np.sum(np.sqrt(np.linalg.eigvals(real["sigma"] @ f["sigma"]).astype(complex)).real)
    diff = real["mu"] - f["mu"]
    fd_eigvals = float(diff @ diff + np.trace(real["sigma"]) + np.trace(f["sigma"]) - 2 * tr)
    eigvals_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    f = gaussian(fake_x)
    fd_eigh = frechet_distance(real["mu"], real["sigma"], f["mu"], f["sigma"])
    eigh_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fd_ours = fd_to(real, fake_x)
    ours_s = time.perf_counter() - t0
    return {
        "eigvals_s": round(eigvals_s, 3),
        "eigh_s": round(eigh_s, 3),
        "ours_s": round(ours_s, 3),
        "ratio_vs_eigvals": round(eigvals_s / ours_s, 1),
        "max_rel_diff": max(abs(fd_eigh - fd_eigvals), abs(fd_ours - fd_eigvals)) / abs(fd_eigvals),
    }


def frechet_times(real: dict) -> dict:
    """three_ways on the reference set's own features with noise added, as frechet_* keys."""
    feats = real["features"]
    fake = feats + 0.1 * torch.randn(feats.shape, generator=torch.Generator().manual_seed(0))
    return {f"frechet_{k}": v for k, v in three_ways(real, fake).items()}


def frechet_scaling(ns=(500, 2048, 5000, 10000), d: int = 2048) -> list[dict]:
    """three_ways at each sample count n on d-dim features. Features are correlated Gaussians:
    the step's cost does not depend on the images."""
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    rows = []
    for n in ns:
        real_x = torch.from_numpy(rng.standard_normal((n, d)) @ mix)
        fake_x = real_x + 0.1 * torch.from_numpy(rng.standard_normal((n, d)))
        real = gaussian(real_x, with_sqrt=True)  # cached once per reference set in a real run
        path = "n x n (low rank)" if n <= d else f"{d} x {d} eigh"
        rows.append({"n": n, "path": path, **three_ways(real, fake_x)})
    return rows


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
    timer = ForwardTimer(ev.inception)
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
        **frechet_times(ev.real_fid),
    }


if __name__ == "__main__":
    import json

    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    print(json.dumps(bench_fid(n, sys.argv[1], data_dir=(sys.argv[3:] or [None])[0]), indent=2))
