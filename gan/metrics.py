"""Evaluation in memory: FID (torch-fidelity's Inception), KID, precision/recall, and the
offline in-domain metrics (fd_domain, class coverage, diversity) of gan.classifier, scored from
images drawn by gan.sampling against real statistics computed once and cached.

torch-fidelity supplies the feature extractors (gan.extractors) and the KID / precision-recall
arithmetic; its calculate_metrics() is not used because it keys cached real statistics by a name
only (not the weights), runs the slow eigvals Frechet step on 2048 x 2048 (gan.frechet has the
exact fast one), reads inputs through a 4-worker DataLoader, and fails on conditional generators
(np.int)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
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
from gan.extractors import (
    INCEPTION,
    INCEPTION_LAYER,
    VGG,
    VGG_LAYER,
    Weights,
    extract,
    extract_all,
    inception,
    resolve_weights,
    vgg,
)
from gan.frechet import fd_to, gaussian
from gan.io import cached
from gan.sampling import batches

log = logging.getLogger(__name__)

REF_SEED = 0  # which real images form the reference set when it is a subset of the split


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
        ev.inception = inception(ev.weights, device, cfg.fid_compile)
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
