"""Datasets as one uint8 tensor: Fashion-MNIST, MNIST, CIFAR-10, image folders, ZIP archives, and
seeded fake images for runs without any data."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from gan.config import DATA_KEYS, FIELDS, Config, GanError, to_dict
from gan.io import atomic_save, file_lock
from gan.sources import (
    convert_channels,
    read_files,
    read_torchvision,
    resize,
    source_fingerprint,
)

log = logging.getLogger(__name__)

HOLDOUT_SEED = 20240601  # fixed, not cfg.seed: every trial must see the same held-out images
PREPARED_VERSION = 2  # bump when the preparation below changes, to invalidate caches
# the data keys data_key names the first way (image_size as "size", limit and balanced for the
# train split only, holdout for folder/zip only), kept so that older caches keep their names
NAMED = ("dataset", "data_path", "classes", "image_size", "channels", "limit", "holdout")
NAMED += ("balanced",)
FAKE_SEED = 20240602  # dataset=fake: the same images for every run and trial
FAKE_SIZES = {"train": 1024, "test": 256}  # images per split
FAKE_CLASSES = 10


@dataclass
class Images:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor | None = None  # (N,) int64, or None when unlabelled
    class_names: list[str] = field(default_factory=list)
    skipped: int = 0  # unreadable files left out

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def __len__(self) -> int:
        return len(self.images)


def data_key(cfg: Config, split: str) -> str:
    """A stable name for (dataset, source, split, classes, size, channels, limit), to key caches."""
    parts = {
        "v": PREPARED_VERSION,
        "dataset": cfg.dataset,
        "source": source_fingerprint(cfg),
        "split": split,
        "classes": list(cfg.classes),
        "size": cfg.image_size,
        "channels": cfg.channels,
        "limit": cfg.limit if split == "train" else 0,
        "holdout": cfg.holdout if cfg.dataset in ("folder", "zip") else 0,
    }
    if cfg.balanced and split == "train":  # only when on: the keys of older runs stay valid
        parts["balanced"] = True
    values = to_dict(cfg)
    for key in DATA_KEYS:  # a later data key (data=True) joins only when set off its default
        if key not in NAMED and getattr(cfg, key) != FIELDS[key].default:
            parts[key] = values[key]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{cfg.dataset}-{split}-{cfg.image_size}px-{cfg.channels}c-{digest}"


def _prepare(cfg: Config, split: str) -> Images:
    skipped = 0
    if cfg.dataset in ("folder", "zip"):
        images, labels, names, skipped = read_files(cfg)
        # a fixed-seed held-out split; the same for every trial and run
        n_test = int(round(cfg.holdout * len(images))) if len(images) > 1 else 0
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
        idx = perm[:n_test] if split == "test" else perm[n_test:]
        idx = idx.sort().values
        images = images[idx]
        labels = labels[idx] if labels is not None else None
    elif cfg.dataset == "fake":
        images, labels, names = fake_images(cfg, split)
    else:
        images, labels, names = read_torchvision(cfg, split)
    if cfg.classes:
        if labels is None:
            raise GanError(
                f"config key 'classes': dataset {cfg.data_path or cfg.dataset} has no labels"
            )
        known = set(range(len(names)))
        if not set(cfg.classes) <= known:
            raise GanError(
                f"config key 'classes': {list(cfg.classes)} not all in "
                f"0..{len(names) - 1} ({names})"
            )
        kept = sorted(set(cfg.classes))
        keep = torch.isin(labels, torch.tensor(kept))
        images = images[keep]
        # relabelled 0..k-1 (names follow), so a conditional G and the classifier see k classes
        remap = torch.full((len(names),), -1, dtype=torch.int64)
        remap[kept] = torch.arange(len(kept))
        labels, names = remap[labels[keep]], [names[k] for k in kept]
    if split == "train" and cfg.limit and cfg.balanced:
        idx = balanced_draw(labels, cfg.limit, cfg)
        images, labels = images[idx], labels[idx]
    elif split == "train" and cfg.limit:
        images = images[: cfg.limit]
        labels = labels[: cfg.limit] if labels is not None else None
    if cfg.dataset not in ("folder", "zip"):
        # after the class and limit filters: each image gives the same pixels, and a slice of
        # the split is resized alone (the whole training split at 100 px RGB is 1.8 GB)
        images = convert_channels(resize(images, cfg.image_size), cfg.channels)
    return Images(images.contiguous(), labels, list(names) if labels is not None else [], skipped)


def fake_images(cfg: Config, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (N, C, H, W), labels, class names) of dataset=fake: each class a fixed smooth
    random pattern (the same in both splits) plus noise of each image's own, at the configured
    size and channels, from fixed seeds; for smoke runs, not a measure of anything."""
    size, channels = cfg.image_size, cfg.channels
    gen = torch.Generator().manual_seed(FAKE_SEED)
    patterns = torch.rand(FAKE_CLASSES, channels, 4, 4, generator=gen)  # (K, C, 4, 4)
    patterns = F.interpolate(patterns, size=(size, size), mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(FAKE_SEED + (split == "test"))
    n = FAKE_SIZES[split]
    labels = torch.randperm(n, generator=gen) % FAKE_CLASSES  # (N,), every class n / K times
    noise = torch.rand(n, channels, size, size, generator=gen)  # (N, C, H, W)
    images = (0.7 * patterns[labels] + 0.3 * noise).mul(255).round().to(torch.uint8)
    return images, labels, [f"fake-{k}" for k in range(FAKE_CLASSES)]


def balanced_draw(labels: torch.Tensor | None, n: int, cfg: Config) -> torch.Tensor:
    """Sorted indices of a fixed random draw of n images, an equal share of each class (the
    first n % k classes one more), the same for every run; GanError if it cannot be drawn."""
    source = cfg.data_path or cfg.dataset
    if labels is None:
        raise GanError(
            f"config key 'balanced': dataset {source} has no labels (no class folders); "
            "set balanced=false"
        )
    k = int(labels.max()) + 1 if len(labels) else 0
    if n > len(labels):
        raise GanError(
            f"config key 'limit': {n} is more than the {len(labels)} training images of "
            f"{source}; use limit={len(labels)} or less"
        )
    gen = torch.Generator().manual_seed(HOLDOUT_SEED)
    picked = []
    for c in range(k):
        members = (labels == c).nonzero().flatten()
        want = n // k + (1 if c < n % k else 0)
        if want > len(members):
            raise GanError(
                f"config key 'limit': class {c} has {len(members)} images, fewer than the "
                f"{want} a balanced draw of {n} needs; lower limit or set balanced=false"
            )
        picked.append(members[torch.randperm(len(members), generator=gen)[:want]])
    return torch.cat(picked).sort().values


def load_split(cfg: Config, split: str = "train") -> Images:
    """The prepared split as uint8 tensors, cached under <data_dir>/prepared/ for later runs."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    cache = Path(cfg.data_dir) / "prepared" / f"{data_key(cfg, split)}.pt"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a best.yaml from another machine names a path missing here
        raise GanError(
            f"config key 'data_dir': cannot create {cache.parent} ({e.strerror}); "
            "pass --set data_dir=DIR with a writable directory"
        ) from None
    with file_lock(cache.with_suffix(".lock")):  # concurrent trials prepare it once
        if cache.exists():
            try:
                d = torch.load(cache, weights_only=True)
                return Images(d["images"], d["labels"], d["class_names"], d["skipped"])
            except Exception:  # noqa: BLE001  (a torn cache file is rebuilt, not fatal)
                log.warning("prepared data %s is unreadable; rebuilding it", cache)
        data = _prepare(cfg, split)
        if len(data) == 0 and split == "train":
            raise GanError(
                f"dataset '{cfg.dataset}' has no images left after classes/limit filters"
            )
        d = {
            "images": data.images,
            "labels": data.labels,
            "class_names": data.class_names,
            "skipped": data.skipped,
        }
        atomic_save(d, cache, "prepared data (config key data_dir)")
        return data


# -- on-device batches and augmentation ---------------------------------------------------------


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded (a plain cast would truncate)."""
    return images.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def augment(x: torch.Tensor, hflip: bool, rotate: float, zoom: float) -> torch.Tensor:
    """Random flip / rotation / zoom of a float batch (B, C, H, W), on its own device."""
    b = x.shape[0]
    if hflip:
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    if rotate > 0 or zoom > 0:
        angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(rotate)
        scale = 1 + (torch.rand(b, device=x.device) * 2 - 1) * zoom  # > 1 zooms in
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # 'border' repeats edge pixels, like Keras' default fill mode
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x
