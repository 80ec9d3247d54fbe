"""Datasets as one uint8 tensor: Fashion-MNIST, MNIST, CIFAR-10, image folders and ZIP archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from gan.config import Config, GanError
from gan.io import atomic_save, file_lock

log = logging.getLogger(__name__)

FMNIST_SYSTEM_DIR = Path(os.environ.get("GAN_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
HOLDOUT_SEED = 20240601  # fixed, not cfg.seed: every trial must see the same held-out images
PREPARED_VERSION = 2  # bump when the preparation below changes, to invalidate caches


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


# -- decoding -----------------------------------------------------------------------------------


def pil_to_array(img: Image.Image, channels: int) -> np.ndarray:
    """Any PIL image (RGBA, palette, 16-bit, float, grayscale) as uint8 (H, W, channels)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        # 16-bit files span 0..65535; PIL's own convert('L') clips them at 255 instead of scaling
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(a)  # uint8 2-D: mode L
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # transparent areas become white, as a viewer shows them
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    img = img.convert("L" if channels == 1 else "RGB")
    a = np.array(img, dtype=np.uint8)  # a writable copy: torch refuses read-only buffers
    return a[:, :, None] if a.ndim == 2 else a


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> (N, C, size, size): center square crop, then antialiased resize."""
    h, w = images.shape[-2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        images = images[..., top : top + s, left : left + s]
    if images.shape[-1] == size:
        return images.contiguous()
    out = []
    for chunk in images.split(1024):  # bounded memory on large sets
        x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, c, H, W) -> (N, channels, H, W): ITU-R 601 luma to gray, repeat to RGB."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _stack(arrays: list[np.ndarray], size: int, channels: int) -> torch.Tensor:
    """Images of mixed sizes -> one uint8 (N, channels, size, size) tensor."""
    out = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).unsqueeze(0)
        out.append(resize(t, size))
    return convert_channels(torch.cat(out), channels)


# -- sources ------------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, dtype, ndim = struct.unpack(">HBB", data[:4])
    if dtype != 0x08:
        raise GanError(f"{path}: not a uint8 IDX file; reinstall dataset-fashion-mnist")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _torchvision(cfg: Config, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (N, C, H, W), labels, class names) of a torchvision dataset."""
    train = split == "train"
    if (
        cfg.dataset == "fashion_mnist"
        and (FMNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").exists()
    ):
        prefix = "train" if train else "t10k"
        x = _read_idx(FMNIST_SYSTEM_DIR / f"{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(FMNIST_SYSTEM_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        return (
            torch.from_numpy(x.copy()).unsqueeze(1),
            torch.from_numpy(y.astype(np.int64)),
            FMNIST_CLASSES,
        )
    import torchvision.datasets as tvd

    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[
        cfg.dataset
    ]
    root = Path(cfg.data_dir) / "torchvision"
    try:
        ds = cls(str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001  (network errors come in many types)
        raise GanError(
            f"dataset '{cfg.dataset}' could not be read or downloaded into {root}: {e}; "
            "check the network, or place the files there by hand"
        ) from None
    x = torch.as_tensor(np.asarray(ds.data))
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)  # CIFAR is NHWC
    return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


def _member_class(parts: tuple[str, ...]) -> str | None:
    return parts[-2] if len(parts) >= 2 else None


def _decode_files(items, cfg: Config) -> tuple[list[np.ndarray], list[str | None], int, list[str]]:
    """Decode (name, parts, opener) items; unreadable ones are skipped and counted."""
    arrays, classes, bad = [], [], []
    for name, parts, opener in items:
        try:
            # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse those too, unread
            with warnings.catch_warnings(), opener() as f:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    img.load()
                    arrays.append(pil_to_array(img, cfg.channels))
            classes.append(_member_class(parts))
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,  # a header claiming > 2 x MAX_IMAGE_PIXELS pixels
            Image.DecompressionBombWarning,  # more than MAX_IMAGE_PIXELS
            OSError,
            ValueError,
            SyntaxError,
            zipfile.BadZipFile,
        ):
            bad.append(name)
    return arrays, classes, len(bad), bad[:5]


def _folder_items(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            yield str(p), p.relative_to(root).parts, (lambda p=p: open(p, "rb"))


def safe_member(name: str) -> PurePosixPath:
    """A ZIP member's path, refusing absolute paths and '..' (path traversal)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise GanError(f"ZIP member {name!r} has an absolute or '..' path; refusing the archive")
    return path


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, key: str) -> bytearray:
    """A member's bytes, read in 1 MiB chunks and refused once past `cap` (config key `key`)."""
    buf = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(1 << 20):
            buf += chunk
            if len(buf) > cap:
                raise GanError(
                    f"ZIP member {info.filename!r} of {zf.filename} unpacks to more than "
                    f"{key}={cap} bytes (its header said {info.file_size}); refusing the "
                    f"archive, or raise {key}"
                )
    return buf


def _zip_items(zf: zipfile.ZipFile, cfg: Config):
    members = []
    for info in zf.infolist():
        path = safe_member(info.filename)  # checked for every member, images or not
        if info.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.name.startswith(".") or "__MACOSX" in path.parts:
            continue
        if info.file_size > cfg.zip_member_max_bytes:
            raise GanError(
                f"ZIP member {info.filename!r} of {zf.filename} unpacks to {info.file_size} "
                f"bytes, more than zip_member_max_bytes={cfg.zip_member_max_bytes}; refusing "
                "the archive (a ZIP bomb?), or raise zip_member_max_bytes for a real image"
            )
        members.append((info, path))
    total = sum(info.file_size for info, _ in members)
    if total > cfg.zip_max_bytes:
        raise GanError(
            f"ZIP archive {zf.filename}: its images unpack to {total} bytes, more than "
            f"zip_max_bytes={cfg.zip_max_bytes}; refusing it, or raise zip_max_bytes"
        )
    left = [cfg.zip_max_bytes]  # what the members may still unpack to, should headers lie

    def read(info: zipfile.ZipInfo) -> io.BytesIO:
        cap, key = min(cfg.zip_member_max_bytes, left[0]), "zip_member_max_bytes"
        if left[0] < cfg.zip_member_max_bytes:
            key = "zip_max_bytes"
        data = _read_capped(zf, info, cap, key)
        left[0] -= len(data)
        return io.BytesIO(data)

    for info, path in members:
        yield info.filename, path.parts, (lambda info=info: read(info))


def _files(cfg: Config) -> tuple[torch.Tensor, torch.Tensor | None, list[str], int]:
    """Read a folder or ZIP of images; subfolders name the classes."""
    path = Path(cfg.data_path).expanduser()
    if cfg.dataset == "folder":
        if not path.is_dir():
            raise GanError(f"data_path {path} is not a folder; pass data_path=DIR with images")
        arrays, classes, skipped, bad = _decode_files(_folder_items(path), cfg)
    else:
        if not path.is_file():
            raise GanError(f"data_path {path} does not exist; pass data_path=FILE.zip")
        try:
            with zipfile.ZipFile(path) as zf:
                arrays, classes, skipped, bad = _decode_files(list(_zip_items(zf, cfg)), cfg)
        except zipfile.BadZipFile:
            raise GanError(f"data_path {path} is not a readable ZIP archive") from None
    if skipped:
        log.warning("skipped %d unreadable image file(s) in %s, e.g. %s", skipped, path, bad)
    if not arrays:
        raise GanError(
            f"no usable images in {path} ({skipped} unreadable); "
            f"supported types: {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    images = _stack(arrays, cfg.image_size, cfg.channels)
    if all(c is not None for c in classes) and len(set(classes)) > 1:
        names = sorted(set(classes))
        labels = torch.tensor([names.index(c) for c in classes], dtype=torch.int64)
        return images, labels, names, skipped
    return images, None, [], skipped


def _source_fingerprint(cfg: Config) -> str:
    """Changes when a folder or ZIP changes on disk, so its prepared cache is rebuilt."""
    if cfg.dataset not in ("folder", "zip"):
        return ""
    path = Path(cfg.data_path).expanduser().resolve()
    if path.is_file():
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    if path.is_dir():
        stats = [p.stat() for p in path.rglob("*") if p.is_file()]
        return f"{path}:{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"  # noqa: E501
    return str(path)


def data_key(cfg: Config, split: str) -> str:
    """A stable name for (dataset, source, split, classes, size, channels, limit), to key caches."""
    parts = {
        "v": PREPARED_VERSION,
        "dataset": cfg.dataset,
        "source": _source_fingerprint(cfg),
        "split": split,
        "classes": list(cfg.classes),
        "size": cfg.image_size,
        "channels": cfg.channels,
        "limit": cfg.limit if split == "train" else 0,
        "holdout": cfg.holdout if cfg.dataset in ("folder", "zip") else 0,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{cfg.dataset}-{split}-{cfg.image_size}px-{cfg.channels}c-{digest}"


def _prepare(cfg: Config, split: str) -> Images:
    skipped = 0
    if cfg.dataset in ("folder", "zip"):
        images, labels, names, skipped = _files(cfg)
        # a fixed-seed held-out split; the same for every trial and run
        n_test = int(round(cfg.holdout * len(images))) if len(images) > 1 else 0
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
        idx = perm[:n_test] if split == "test" else perm[n_test:]
        idx = idx.sort().values
        images = images[idx]
        labels = labels[idx] if labels is not None else None
    else:
        images, labels, names = _torchvision(cfg, split)
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
    if split == "train" and cfg.limit:
        images = images[: cfg.limit]
        labels = labels[: cfg.limit] if labels is not None else None
    if cfg.dataset not in ("folder", "zip"):
        # after the class and limit filters: each image gives the same pixels, and a slice of
        # the split is resized alone (the whole training split at 100 px RGB is 1.8 GB)
        images = convert_channels(resize(images, cfg.image_size), cfg.channels)
    return Images(images.contiguous(), labels, list(names) if labels is not None else [], skipped)


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
