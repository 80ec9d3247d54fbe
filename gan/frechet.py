"""The Frechet distance between two Gaussians of features, exact and fast: one symmetric
eigenproblem per evaluation (the real set's covariance root is computed once and cached), and an
n x n one when there are fewer samples than feature dimensions."""

from __future__ import annotations

import numpy as np
import torch


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix (round-off negative eigenvalues -> 0)."""
    w, V = np.linalg.eigh(sigma)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma1: np.ndarray | None = None) -> float:
    """|mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr sqrt(s1 s2) between two Gaussians."""
    # s1 s2 has the eigenvalues of A s2 A (A = s1^1/2), which is symmetric PSD: eigvalsh on it is
    # exact, real and several times faster than eigvals on the non-symmetric s1 s2.
    A = sqrtm_psd(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    M = A @ sigma2 @ A
    ev = np.linalg.eigvalsh((M + M.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0.0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def gaussian(features: torch.Tensor, with_sqrt: bool = False) -> dict:
    """Mean and covariance (float64) of features (N, D); with_sqrt adds the covariance's root."""
    x = features.double().numpy()
    out = {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}
    if with_sqrt:  # cached with the real statistics: each evaluation then needs one eigvalsh
        out["sqrt_sigma"] = sqrtm_psd(out["sigma"])
    return out


def fd_to(real: dict, fake_features: torch.Tensor) -> float:
    """Frechet distance from fake features (N, D) to real statistics (gaussian(with_sqrt))."""
    x = fake_features.double().numpy()
    n, d = x.shape
    if n > d:
        f = gaussian(fake_features)
        return frechet_distance(real["mu"], real["sigma"], f["mu"], f["sigma"], real["sqrt_sigma"])
    # N <= D: s2 = Xc^T Xc / (n - 1), so A s2 A = B^T B with B = Xc A / sqrt(n - 1), whose
    # nonzero eigenvalues are those of the n x n matrix B B^T: exact, and no D x D eigenproblem
    mu = x.mean(0)
    B = (x - mu) @ real["sqrt_sigma"] / np.sqrt(n - 1)
    ev = np.linalg.eigvalsh(B @ B.T)
    tr_covmean = np.sqrt(np.clip(ev, 0.0, None)).sum()
    tr_s2 = ((x - mu) ** 2).sum() / (n - 1)
    diff = real["mu"] - mu
    return float(diff @ diff + np.trace(real["sigma"]) + tr_s2 - 2.0 * tr_covmean)
