"""The Fréchet step alone: seconds from fake features to a distance, torch-fidelity's eigvals way
against gan.frechet's (a cached root of the real covariance; an n x n problem while n <= d), at
several sample counts. `python -m bench frechet`."""

from __future__ import annotations

import time

import numpy as np
import torch

from gan.frechet import fd_to, frechet_distance, gaussian


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


def run(args) -> list[dict]:
    """n = 500, 2048, 5000, 10000 on 2048-d features (--quick: 500 and 2048)."""
    rows = frechet_scaling((500, 2048) if args.quick else (500, 2048, 5000, 10000))
    for r in rows:
        print(
            f"frechet n={r['n']} ({r['path']}): ours {r['ours_s']} s, eigvals "
            f"{r['eigvals_s']} s, x{r['ratio_vs_eigvals']}",
            flush=True,
        )
    return rows
