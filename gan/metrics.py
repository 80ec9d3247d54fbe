"""Evaluation in memory: FID (torch-fidelity's Inception), KID, precision/recall, and the
offline in-domain metrics (fd_domain, class coverage, diversity) of gan.classifier.

torch-fidelity supplies the feature extractors and the KID / precision-recall arithmetic; its
calculate_metrics() is not used because it keys cached real statistics by a name only (not the
weights), runs the slow eigvals Frechet step on 2048 x 2048, reads inputs through a 4-worker
DataLoader, and fails on conditional generators (np.int)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_kid import (
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    kid_features_to_metric,
)
from torch_fidelity.metric_prc import prc_features_to_metric

from gan.classifier import (
    Classifier,
    class_coverage,
    domain_classifier,
    mean_pairwise_distance,
    predict,
)
from gan.config import Config, GanError
from gan.data import data_key, load_split
from gan.io import cached
from gan.sampling import batches

log = logging.getLogger(__name__)

INCEPTION, INCEPTION_LAYER = "inception-v3-compat", "2048"  # the standard FID features
VGG, VGG_LAYER = "vgg16", "fc2_relu"  # torch-fidelity's precision/recall features
# torch.hub names its files <name>-<sha256 prefix>.pth: the standard weights' fingerprint
STANDARD_SHA = re.search(r"-([0-9a-f]{8})\.pth$", URL_INCEPTION_V3).group(1)
REF_SEED = 0  # which real images form the reference set when it is a subset of the split
WAYS_OUT = (
    "ways out: run once with internet access (the file is cached in $TORCH_HOME), "
    "or copy it from {url} to a local file and set GAN_FID_WEIGHTS=/path/to/it "
    "(or --set fid_weights=/path/to/it), or use the offline in-domain metric "
    "(--set metric=fd_domain, labelled datasets)"
)


# -- Frechet distance -------------------------------------------------------------------------


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


# -- weights ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The Inception weights a FID was computed with; only the published ones are standard."""

    path: str  # the Inception weights file torch-fidelity loads
    sha: str  # its sha256 prefix, recorded with every result
    standard: bool  # True only for torch-fidelity's published weights

    @property
    def label(self) -> str:
        return "FID" if self.standard else f"FID* (non-standard weights {self.sha})"


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_sha(path: str | Path) -> str:
    """sha256 prefix (8 hex) of a file, memoized while the file is unchanged."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)[:8]


def resolve_weights(cfg: Config) -> Weights:
    """The Inception weights: fid_weights, else $GAN_FID_WEIGHTS, else the standard download."""
    url = URL_INCEPTION_V3
    local = cfg.fid_weights or os.environ.get("GAN_FID_WEIGHTS", "")
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            origin = "config key fid_weights" if cfg.fid_weights else "$GAN_FID_WEIGHTS"
            raise GanError(
                f"FID weights file {path} (from {origin}) does not exist; "
                + WAYS_OUT.format(url=url)
            )
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading the standard Inception weights to %s", path)
            try:
                torch.hub.download_url_to_file(url, str(path), hash_prefix=STANDARD_SHA)
            except Exception as e:  # noqa: BLE001  (DNS, proxy, HTTP and hash errors all differ)
                raise GanError(
                    f"cannot download the standard FID Inception weights to {path} "
                    f"({type(e).__name__}: {e}); " + WAYS_OUT.format(url=url)
                ) from None
    sha = file_sha(path)
    return Weights(str(path), sha, sha == STANDARD_SHA)


def load_weights(path: str | Path, what: str, fix: str) -> dict:
    """A weights file as a state dict, read with weights_only=True: torch-fidelity and torchvision
    would unpickle it in full (weights_only=False), and a crafted file then runs code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (foreign pickles, truncation, non-torch files differ)
        raise GanError(
            f"{what} file {path} is not a plain weights file ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); {fix}"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise GanError(f"{what} file {path} is not a state dict of tensors; {fix}")
    return state


def check_state(module: nn.Module, state: dict, path: str | Path, what: str, fix: str) -> None:
    """GanError naming the first missing, unexpected or mis-shaped key of `state`."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    # BatchNorm fills a missing num_batches_tracked itself (files saved before torch 0.4.1)
    missing = sorted(k for k in set(want) - set(got) if not k.endswith("num_batches_tracked"))
    extra = sorted(set(got) - set(want))
    shape = [k for k in want if k in got and want[k] != got[k]]
    if missing or extra or shape:
        problem = (
            f"missing key {missing[0]!r}"
            if missing
            else f"unexpected key {extra[0]!r}"
            if extra
            else f"key {shape[0]!r} has shape {list(got[shape[0]])}, not {list(want[shape[0]])}"
        )
        raise GanError(f"{what} file {path} has the wrong layout ({problem}); {fix}")


# torch-fidelity's constructors load their weights themselves, with a full unpickler; the names
# they load through are swapped for the checked state dict while they run (one at a time)
_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _loader(module, name: str, value) -> Iterator[None]:
    with _BUILD_LOCK:
        saved = getattr(module, name)
        setattr(module, name, lambda *a, **k: value)
        try:
            yield
        finally:
            setattr(module, name, saved)


def inception(weights: Weights, device: torch.device) -> nn.Module:
    """torch-fidelity's Inception feature extractor with these weights, on `device`."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe_inception
    import torchvision

    what, fix = "FID weights", WAYS_OUT.format(url=URL_INCEPTION_V3)
    state = load_weights(weights.path, what, fix)
    # torchvision's inception_v3 has torch-fidelity's 566 keys and shapes; on the meta device
    # it costs no memory and no initialisation
    with torch.device("meta"):
        layout = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )
    check_state(layout, state, weights.path, what, fix)
    try:
        with _loader(fe_inception, "load_state_dict_from_url", state):
            fe = fe_inception.FeatureExtractorInceptionV3(
                INCEPTION, [INCEPTION_LAYER], verbose=False
            )
    except RuntimeError as e:  # load_state_dict's own strict check, should the layouts differ
        raise GanError(
            f"{what} file {weights.path} does not fit torch-fidelity's Inception "
            f"({str(e)[:200]}); {fix}"
        ) from None
    # built on the CPU, then .to(device); channels_last: oneDNN/cuDNN's fast convolution layout,
    # ~2x faster on this 2-core CPU with features equal to ~1e-6 relative (the bench checks FID
    # against torch-fidelity's own call)
    return fe.to(device, memory_format=torch.channels_last)


VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1


def vgg(device: torch.device) -> nn.Module:
    """torch-fidelity's VGG16 extractor for precision/recall (torchvision ImageNet weights)."""
    import torch_fidelity.feature_extractor_vgg16 as fe_vgg
    import torchvision

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG_URL).name
    fix = (
        f"run once with internet access (they are cached in {path.parent}), or copy them from "
        f"{VGG_URL} to {path}, or drop prc/--prc"
    )
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            sha = re.search(r"-([0-9a-f]{8})\.pth$", VGG_URL).group(1)
            torch.hub.download_url_to_file(VGG_URL, str(path), hash_prefix=sha)
        except Exception as e:  # noqa: BLE001  (offline: URLError; proxies and hashes differ)
            raise GanError(
                f"precision/recall (prc) needs torchvision's VGG16 ImageNet weights, which could "
                f"not be downloaded ({type(e).__name__}: {str(e)[:200]}); {fix}"
            ) from None
    what = "precision/recall (prc) VGG16 weights"
    # the cached file is read weights-only too: torchvision would unpickle it in full
    state = load_weights(path, what, fix)
    with torch.device("meta"):  # no memory, no initialisation: assign= puts the weights in
        model = torchvision.models.vgg16(weights=None, init_weights=False)
    check_state(model, state, path, what, fix)
    model.load_state_dict(state, assign=True)
    with _loader(fe_vgg, "torchvision_load_pretrained_vgg16", model):
        fe = fe_vgg.FeatureExtractorVGG16(VGG, [VGG_LAYER], verbose=False)
    return fe.to(device)


# -- images in, features out ------------------------------------------------------------------


def extract(fe: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Features (B, D) float32 on the CPU of a uint8 batch, 1 or 3 channels."""
    device = next(fe.parameters()).device
    x = batch.to(device)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    with torch.no_grad():
        return fe(x)[0].float().cpu()


def extract_all(fe: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Features of a uint8 image tensor (N, C, H, W), in batches."""
    return torch.cat(
        [extract(fe, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


# -- the reference set ----------------------------------------------------------------------


def reference(cfg: Config):
    """The real images scores compare against: min(fid_samples, split size) of fid_ref_split,
    a fixed subset, so FID compares N generated with N real (equal N, as the protocols do)."""
    data = load_split(cfg, cfg.fid_ref_split)
    if len(data) < 2:
        raise GanError(
            f"config key 'fid_ref_split': the {cfg.fid_ref_split} split has {len(data)} images, "
            "FID needs at least 2; use fid_ref_split=train or a larger holdout"
        )
    n = min(cfg.fid_samples, len(data))
    if n < len(data):
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(REF_SEED))
        idx = idx[:n].sort().values
        data = replace(
            data, images=data.images[idx], labels=None if data.labels is None else data.labels[idx]
        )
    return data


# -- the evaluator ----------------------------------------------------------------------------


@dataclass
class Evaluator:
    """Scores generators against real statistics prepared once by make_evaluator."""

    cfg: Config
    device: torch.device
    n_ref: int  # real images in the reference set
    weights: Weights | None = None
    inception: nn.Module | None = None
    real_fid: dict | None = None  # gaussian(with_sqrt) + "features" of the reference set
    vgg: nn.Module | None = None
    real_vgg: torch.Tensor | None = None
    classifier: Classifier | None = None
    classifier_info: dict | None = None
    real_domain: dict | None = None  # gaussian(with_sqrt) of classifier features + "diversity"

    @property
    def batch_size(self) -> int:
        return 256 if self.device.type == "cuda" else 64

    def evaluate(self, G: nn.Module, n: int | None = None) -> dict:
        """Scores of n generated images (default cfg.fid_samples); G's mode and the RNG kept."""
        n = n or self.cfg.fid_samples
        if n < 2:
            raise GanError(f"FID needs at least 2 generated samples, got {n}")
        was_training = G.training
        G.eval()
        try:
            return self._score(self._features(x for x, _ in batches(G, n, self.batch_size)))
        finally:
            G.train(was_training)

    def evaluate_images(self, images: torch.Tensor) -> dict:
        """Scores of a set of uint8 images (N, C, H, W) in place of a generator's samples."""
        b = self.batch_size
        return self._score(self._features(images[i : i + b] for i in range(0, len(images), b)))

    def _features(self, batches) -> dict:
        out = {"fid": [], "vgg": [], "domain": [], "logits": []}
        for x in batches:  # uint8 (B, 3 or C, H, W)
            if self.inception is not None:
                out["fid"].append(extract(self.inception, x))
            if self.vgg is not None:
                out["vgg"].append(extract(self.vgg, x))
            if self.classifier is not None:
                f, logits = predict(self.classifier, x[:, : self.cfg.channels])
                out["domain"].append(f)
                out["logits"].append(logits)
        return {k: torch.cat(v) for k, v in out.items() if v}

    def _score(self, fake: dict) -> dict:
        out = {}
        if "fid" in fake:
            n = len(fake["fid"])
            out["fid"] = fd_to(self.real_fid, fake["fid"])
            out.update(fid_weights=self.weights.sha, fid_standard=self.weights.standard)
            out.update(fid_samples=n, fid_ref=f"{self.cfg.fid_ref_split}:{self.n_ref}")
            if self.cfg.kid:
                # KID's subsets must fit in both sets; torch-fidelity's default is 1000
                m = kid_features_to_metric(
                    fake["fid"],
                    self.real_fid["features"],
                    kid_subset_size=min(1000, n, self.n_ref),
                    verbose=False,
                )
                out.update(kid_mean=m[KEY_METRIC_KID_MEAN], kid_std=m[KEY_METRIC_KID_STD])
        if "vgg" in fake:
            m = prc_features_to_metric(fake["vgg"], self.real_vgg, verbose=False)
            out.update(precision=m["precision"], recall=m["recall"])
        if "domain" in fake:
            out["fd_domain"] = fd_to(self.real_domain, fake["domain"])
            classes = self.classifier_info["classes"]
            # argmax over the kept classes only: a class filter must not count as collapse
            pred = torch.tensor(classes)[fake["logits"][:, classes].argmax(1)]
            out.update(class_coverage(pred, classes))
            out["diversity"] = (
                mean_pairwise_distance(fake["domain"]) / self.real_domain["diversity"]
            )
            out["diversity_space"] = "classifier"
            out["classifier_acc"] = self.classifier_info["test_acc"]
        elif "fid" in fake:  # unlabelled data: diversity in Inception space instead
            real = mean_pairwise_distance(self.real_fid["features"])
            out["diversity"] = mean_pairwise_distance(fake["fid"]) / real
            out["diversity_space"] = "inception"
        return out


def make_evaluator(cfg: Config, device: torch.device | str = "cpu") -> Evaluator:
    """Check weights and prepare (or load cached) real statistics before any training starts."""
    # building networks draws their (discarded) initial weights from the global RNG, which
    # train() has already seeded: fork it so a run is the same with or without evaluation
    with torch.random.fork_rng(devices=[]):
        return _make_evaluator(cfg, torch.device(device))


def _make_evaluator(cfg: Config, device: torch.device) -> Evaluator:
    ref = reference(cfg)
    labelled = ref.labels is not None
    if cfg.metric == "fd_domain" and not labelled:
        raise GanError(
            f"config key 'metric': fd_domain needs a labelled dataset, and {cfg.dataset} "
            f"{cfg.data_path} has no class folders; use metric=fid"
        )
    ev = Evaluator(cfg, device, len(ref))
    if cfg.metric == "fid" or cfg.kid:
        ev.weights = resolve_weights(cfg)
        ev.inception = inception(ev.weights, device)
        # keyed by every data option and the weights' hash: torch-fidelity's own cache is keyed
        # by a name only, and would reuse statistics made with other weights
        key = (
            f"{data_key(cfg, cfg.fid_ref_split)}|n={len(ref)}|seed={REF_SEED}"
            f"|{INCEPTION}:{INCEPTION_LAYER}|weights={ev.weights.sha}"
        )

        def real_fid() -> dict:
            log.info("computing real Inception statistics of %d images (cached)", len(ref))
            feats = extract_all(ev.inception, ref.images, ev.batch_size)
            stats = {k: torch.from_numpy(v) for k, v in gaussian(feats, with_sqrt=True).items()}
            return {"features": feats, **stats}

        saved = cached(Path(cfg.data_dir) / "cache", "fid", key, real_fid)
        ev.real_fid = {k: saved[k].numpy() for k in ("mu", "sigma", "sqrt_sigma")}
        ev.real_fid["features"] = saved["features"]
    if cfg.prc:
        ev.vgg = vgg(device)
        key = f"{data_key(cfg, cfg.fid_ref_split)}|n={len(ref)}|seed={REF_SEED}|{VGG}:{VGG_LAYER}"
        saved = cached(
            Path(cfg.data_dir) / "cache",
            "vgg",
            key,
            lambda: {"features": extract_all(ev.vgg, ref.images, ev.batch_size)},
        )
        ev.real_vgg = saved["features"]
    found = domain_classifier(cfg, device) if labelled else None
    if found is not None:
        ev.classifier, ev.classifier_info = found
        feats = torch.cat(
            [predict(ev.classifier, ref.images[i : i + 1000])[0] for i in range(0, len(ref), 1000)]
        )
        ev.real_domain = {
            **gaussian(feats, with_sqrt=True),
            "diversity": mean_pairwise_distance(feats),
        }
    return ev
