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


# -- the scorers: one per metric family, each with its real statistics ----------------------
#
# A scorer is built once with the reference set's statistics (computed, or read from the cache),
# then turns each uint8 batch into features and a whole set's features into scores.


class InceptionScorer:
    """FID, and KID when cfg.kid, in torch-fidelity's Inception space."""

    def __init__(self, cfg: Config, ref, device: torch.device, batch_size: int):
        self.kid, self.n_ref = cfg.kid, len(ref)
        self.ref_name = f"{cfg.fid_ref_split}:{len(ref)}"
        self.weights: Weights = resolve_weights(cfg)
        self.net = inception(self.weights, device, cfg.fid_compile)
        # keyed by every data option and the weights' hash: torch-fidelity's own cache is keyed
        # by a name only, and would reuse statistics made with other weights
        key = (
            f"{data_key(cfg, cfg.fid_ref_split)}|n={len(ref)}|seed={REF_SEED}"
            f"|{INCEPTION}:{INCEPTION_LAYER}|weights={self.weights.sha}"
        )

        def real_fid() -> dict:
            log.info("computing real Inception statistics of %d images (cached)", len(ref))
            feats = extract_all(self.net, ref.images, batch_size)
            stats = {k: torch.from_numpy(v) for k, v in gaussian(feats, with_sqrt=True).items()}
            return {"features": feats, **stats}

        saved = cached(Path(cfg.data_dir) / "cache", "fid", key, real_fid)
        # gaussian(with_sqrt) + "features" of the reference set
        self.real = {k: saved[k].numpy() for k in ("mu", "sigma", "sqrt_sigma")}
        self.real["features"] = saved["features"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return extract(self.net, x)

    def score(self, fake: torch.Tensor) -> dict:
        n = len(fake)
        out = {"fid": fd_to(self.real, fake)}
        out.update(fid_weights=self.weights.sha, fid_standard=self.weights.standard)
        out.update(fid_samples=n, fid_ref=self.ref_name)
        if self.kid:
            # imported here, as in gan.extractors: torch-fidelity's package imports torchvision
            from torch_fidelity.metric_kid import (
                KEY_METRIC_KID_MEAN,
                KEY_METRIC_KID_STD,
                kid_features_to_metric,
            )

            # KID's subsets must fit in both sets; torch-fidelity's default is 1000
            m = kid_features_to_metric(
                fake,
                self.real["features"],
                kid_subset_size=min(1000, n, self.n_ref),
                verbose=False,
            )
            out.update(kid_mean=m[KEY_METRIC_KID_MEAN], kid_std=m[KEY_METRIC_KID_STD])
        return out

    def diversity(self, fake: torch.Tensor) -> dict:
        """Diversity in Inception space, for unlabelled data (no domain classifier)."""
        real = mean_pairwise_distance(self.real["features"])
        return {"diversity": mean_pairwise_distance(fake) / real, "diversity_space": "inception"}


class VggScorer:
    """Precision and recall (cfg.prc) in VGG16 space."""

    def __init__(self, cfg: Config, ref, device: torch.device, batch_size: int):
        self.net = vgg(device)
        key = f"{data_key(cfg, cfg.fid_ref_split)}|n={len(ref)}|seed={REF_SEED}|{VGG}:{VGG_LAYER}"
        saved = cached(
            Path(cfg.data_dir) / "cache",
            "vgg",
            key,
            lambda: {"features": extract_all(self.net, ref.images, batch_size)},
        )
        self.real = saved["features"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return extract(self.net, x)

    def score(self, fake: torch.Tensor) -> dict:
        from torch_fidelity.metric_prc import prc_features_to_metric

        m = prc_features_to_metric(fake, self.real, verbose=False)
        return {"precision": m["precision"], "recall": m["recall"]}


class DomainScorer:
    """fd_domain, class coverage and diversity in the dataset classifier's feature space."""

    def __init__(self, classifier: Classifier, info: dict, ref, channels: int):
        self.classifier, self.info, self.channels = classifier, info, channels
        feats = torch.cat(
            [predict(classifier, ref.images[i : i + 1000])[0] for i in range(0, len(ref), 1000)]
        )
        # gaussian(with_sqrt) of the reference set's classifier features + their "diversity"
        self.real = {**gaussian(feats, with_sqrt=True), "diversity": mean_pairwise_distance(feats)}

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return predict(self.classifier, x[:, : self.channels])  # (features, logits)

    def score(self, fake: tuple[torch.Tensor, torch.Tensor]) -> dict:
        feats, logits = fake
        out = {"fd_domain": fd_to(self.real, feats)}
        classes = self.info["classes"]
        # argmax over the kept classes only: a class filter must not count as collapse
        pred = torch.tensor(classes)[logits[:, classes].argmax(1)]
        out.update(class_coverage(pred, classes))
        out["diversity"] = mean_pairwise_distance(feats) / self.real["diversity"]
        out["diversity_space"] = "classifier"
        out["classifier_acc"] = self.info["test_acc"]
        return out


def _cat(parts: list):
    """Per-batch features joined along N: tensors, or tuples of tensors element by element."""
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))
    return torch.cat(parts)


# -- the evaluator ----------------------------------------------------------------------------


@dataclass
class Evaluator:
    """Scores generators with the scorers make_evaluator prepared (None: not configured)."""

    cfg: Config
    device: torch.device
    inception: InceptionScorer | None = None
    vgg: VggScorer | None = None
    domain: DomainScorer | None = None

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
            return self._score(x for x, _ in batches(G, n, self.batch_size))
        finally:
            G.train(was_training)

    def evaluate_images(self, images: torch.Tensor) -> dict:
        """Scores of a set of uint8 images (N, C, H, W) in place of a generator's samples."""
        b = self.batch_size
        return self._score(images[i : i + b] for i in range(0, len(images), b))

    def _score(self, batches) -> dict:
        scorers = [s for s in (self.inception, self.vgg, self.domain) if s is not None]
        parts = {s: [] for s in scorers}
        for x in batches:  # uint8 (B, 3 or C, H, W)
            for s in scorers:
                parts[s].append(s.features(x))
        fake = {s: _cat(p) for s, p in parts.items() if p}
        out = {}
        for s, f in fake.items():
            out.update(s.score(f))
        if self.domain is None and self.inception in fake:  # unlabelled data
            out.update(self.inception.diversity(fake[self.inception]))
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
    ev = Evaluator(cfg, device)
    if cfg.metric == "fid" or cfg.kid:
        ev.inception = InceptionScorer(cfg, ref, device, ev.batch_size)
    if cfg.prc:
        ev.vgg = VggScorer(cfg, ref, device, ev.batch_size)
    found = domain_classifier(cfg, device) if labelled else None
    if found is not None:
        ev.domain = DomainScorer(*found, ref, cfg.channels)
    return ev
