"""Where images come from: the IDX files of Fashion-MNIST (the system copy, else a torchvision
download), torchvision's MNIST and CIFAR-10, and folders or ZIP archives of image files (members
checked for paths outside the archive and capped in size before they are read), decoded to uint8
arrays of one size and channel count."""

from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import struct
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from gan.config import Config, GanError

log = logging.getLogger("gan.data")  # reading and preparing data log under one name

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
# the methods zipfile unpacks (bzip2 and lzma where Python was built with them)
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

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


def read_torchvision(cfg: Config, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
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


class UnreadableMemberError(Exception):
    """A member that cannot be read as a file (encrypted, an unknown compression method, a CRC
    error, a link or a directory): skipped and counted like an image that does not decode."""


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
            UnreadableMemberError,
        ):
            bad.append(name)
    return arrays, classes, len(bad), bad[:5]


def _folder_items(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            yield str(p), p.relative_to(root).parts, (lambda p=p: open(p, "rb"))


def safe_member(name: str, archive: str | Path = "the archive") -> PurePosixPath:
    """A ZIP member's path, refusing absolute paths and '..' (path traversal)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise GanError(
            f"ZIP member {name!r} of {archive} has an absolute or '..' path; refusing the "
            "archive: unpack it and pass the folder (dataset=folder), or rebuild it"
        )
    return path


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, key: str) -> bytearray:
    """A member's bytes, read in 1 MiB chunks and refused once past `cap` (config key `key`);
    UnreadableMemberError if zipfile cannot unpack it (corrupt data, a CRC error)."""
    buf = bytearray()
    try:
        with zf.open(info) as f:
            while chunk := f.read(1 << 20):
                buf += chunk
                if len(buf) > cap:
                    raise GanError(
                        f"ZIP member {info.filename!r} of {zf.filename} unpacks to more than "
                        f"{key}={cap} bytes (its header said {info.file_size}); refusing the "
                        f"archive, or raise {key}"
                    )
    except (RuntimeError, NotImplementedError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        # the cap's GanError is none of these: it refuses the archive
        raise UnreadableMemberError(f"{type(e).__name__}: {e}") from None
    return buf


def _unreadable(info: zipfile.ZipInfo) -> str | None:
    """Why a member cannot be read as an image file without unpacking it, or None."""
    if "\0" in info.orig_filename:  # zipfile cuts the name at the NUL: not the name it has
        return "a NUL in its name"
    mode = info.external_attr >> 16  # the Unix mode, where the archiver recorded one
    if info.is_dir() or stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: permissions alone, as zipfile writes
        return "a link or special file"  # its bytes are a link's target, never followed
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in ZIP_METHODS:
        return f"compression method {info.compress_type}"
    return None


def _zip_items(zf: zipfile.ZipFile, cfg: Config):
    members = []
    for info in zf.infolist():
        path = safe_member(
            info.orig_filename, zf.filename
        )  # checked for every member, images or not
        if path.suffix.lower() not in IMAGE_SUFFIXES and "\0" not in info.orig_filename:
            continue  # a class folder, a README: not images, not counted
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
        why = _unreadable(info)
        if why:
            raise UnreadableMemberError(why)
        cap, key = min(cfg.zip_member_max_bytes, left[0]), "zip_member_max_bytes"
        if left[0] < cfg.zip_member_max_bytes:
            key = "zip_max_bytes"
        data = _read_capped(zf, info, cap, key)
        left[0] -= len(data)
        return io.BytesIO(data)

    for info, path in members:
        yield info.filename, path.parts, (lambda info=info: read(info))


def read_files(cfg: Config) -> tuple[torch.Tensor, torch.Tensor | None, list[str], int]:
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
    if not arrays:  # the one line says it all: no warning before it
        raise GanError(
            f"no usable images in {path} ({skipped} unreadable); "
            f"supported types: {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if skipped:
        log.warning("skipped %d unreadable image file(s) in %s, e.g. %s", skipped, path, bad)
    images = _stack(arrays, cfg.image_size, cfg.channels)
    if all(c is not None for c in classes) and len(set(classes)) > 1:
        names = sorted(set(classes))
        labels = torch.tensor([names.index(c) for c in classes], dtype=torch.int64)
        return images, labels, names, skipped
    return images, None, [], skipped


def source_fingerprint(cfg: Config) -> str:
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
