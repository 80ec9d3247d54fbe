"""`gan generate`: PNG folders or ZIPs with a manifest, latent walks, and a per-class check."""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gan.checkpoint import find_checkpoint, load_generator
from gan.config import GanError
from gan.device import resolve_device
from gan.sampling import (
    check_seed,
    folder_name,
    grid,
    latents,
    model_classes,
    png_bytes,
    render,
    resolve_class,
    sample,
    to_pil,
)

ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same seed gives the same ZIP bytes
MANIFEST = "manifest.csv"
COLUMNS = ("file", "class", "label", "seed", "index", "checkpoint")


# -- writing a folder or a ZIP, batch by batch --------------------------------------------------


class FolderSink:
    """Images as files under a new (or empty) folder; manifest.csv inside it."""

    def __init__(self, root: Path):
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise GanError(f"--out {root} exists and is not an empty folder; pass a new folder")
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.manifest = root, open(root / MANIFEST, "w", newline="")

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self, ok: bool) -> None:
        self.manifest.close()


class ZipSink:
    """Images appended to an open ZIP, renamed into place only once complete; manifest inside."""

    def __init__(self, path: Path):
        if path.exists():
            raise GanError(f"--out {path} already exists; pass a new .zip path")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.tmp = path, path.with_name(f".{path.name}.partial")
        self.zf = zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED)  # PNG is compressed already
        self.manifest = tempfile.TemporaryFile("w+", newline="")  # rows stream to disk, not RAM

    def write(self, name: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
        info = zipfile.ZipInfo(name, ZIP_TIME)
        info.external_attr, info.compress_type = 0o644 << 16, compress
        self.zf.writestr(info, data)

    def close(self, ok: bool) -> None:
        if ok:
            self.manifest.seek(0)
            self.write(MANIFEST, self.manifest.read().encode(), zipfile.ZIP_DEFLATED)
        self.manifest.close()
        self.zf.close()
        if ok:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def generate_images(
    target: str | Path,
    n: int,
    out: str | Path,
    seed: int = 0,
    klass: str | int | None = None,
    batch: int = 256,
    device: str = "cpu",
    ema: bool = True,
) -> Path:
    """Write n PNGs and manifest.csv to a folder or .zip, one batch in memory at a time.

    Image i is G(z_i) with z_i drawn from (seed, i) alone, so a seed gives the same bytes again.
    """
    if n < 1 or batch < 1:
        raise GanError(f"--n {n} / --batch {batch}: both must be at least 1")
    check_seed(seed)
    path = find_checkpoint(target)
    G, cfg, ckpt = load_generator(path, device, ema=ema)
    classes = model_classes(G, ckpt)
    label = resolve_class(klass, classes) if klass is not None else None
    folders = {k: folder_name(name) for k, name in classes.items()}
    if len(set(folders.values())) < len(folders):  # two names that differ only in odd characters
        folders = {k: f"{k}_{name}" for k, name in folders.items()}
    out = Path(out)
    sink = ZipSink(out) if out.suffix.lower() == ".zip" else FolderSink(out)
    rows = csv.writer(sink.manifest)
    rows.writerow(COLUMNS)
    digits = max(6, len(str(n - 1)))
    ok = False
    # a progress bar on a terminal only; logs and pipes stay clean
    bar = tqdm(total=n, desc="generated", unit="img", disable=not sys.stderr.isatty())
    try:
        for start in range(0, n, batch):
            images, y = sample(G, seed, start, min(batch, n - start), label)
            for j, image in enumerate(images):
                i, k = start + j, (None if y is None else int(y[j]))
                name = f"{i:0{digits}d}.png" if k is None else f"{folders[k]}/{i:0{digits}d}.png"
                sink.write(name, png_bytes(image))
                rows.writerow((name, classes.get(k, ""), "" if k is None else k, seed, i, path))
            bar.update(len(images))
        ok = True
    finally:
        bar.close()
        sink.close(ok)
    return out


# -- latent walks (seed 003: control the output through the noise vector) -----------------------


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (T, D) from a to b: stays at the norm a Gaussian z typically has."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:  # (nearly) parallel: the formula divides by sin(omega) ~ 0
        return lerp(a, b, t)
    s = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / s)[:, None] * a + (torch.sin(t * omega) / s)[:, None] * b


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation (T, D) from a to b."""
    return a + (b - a) * t[:, None]


def load_latents(path: str | Path, latent_dim: int) -> torch.Tensor:
    """Latent vectors (K, latent_dim) from a .npy or .pt file."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            z = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            z = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (missing file, bad pickle, bad array all differ)
        raise GanError(f"--latents {path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != latent_dim or len(z) < 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise GanError(f"--latents {path}: need a (K >= 2, {latent_dim}) array, got {shape}")
    return z.float()


def interpolate(
    G: torch.nn.Module,
    keys: torch.Tensor,
    names: list[str],
    out: str | Path,
    steps: int = 8,
    mode: str = "slerp",
    labels: list[int | None] = (None,),
    scale: int = 1,
) -> list[Path]:
    """Strips between consecutive keys (one row per label), their grid, and a looping walk.gif."""
    if steps < 2 or len(keys) < 2:
        raise GanError("interpolation needs at least 2 seeds (or latents) and --steps >= 2")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path_fn = slerp if mode == "slerp" else lerp
    L = len(labels)

    def images_on(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = path_fn(a, b, t).repeat(L, 1)  # (L * T, D), label-major
        y = None if labels[0] is None else torch.tensor(labels).repeat_interleave(len(t))
        return render(G, z, y)  # (L * T, C, H, W): row l of a grid with T columns is label l

    written, strips = [], []
    for i in range(len(keys) - 1):
        strips.append(images_on(keys[i], keys[i + 1], torch.linspace(0, 1, steps)))
        written.append(out / f"strip_{i:02d}_{names[i]}-{names[i + 1]}.png")
        written[-1].write_bytes(png_bytes(grid(strips[-1], steps, scale=scale)))
    written.append(out / "grid.png")
    written[-1].write_bytes(png_bytes(grid(torch.cat(strips), steps, scale=scale)))
    frames, t = [], torch.linspace(0, 1, steps + 1)[:-1]  # a closed loop: 0 -> 1 -> ... -> 0
    for i in range(len(keys)):
        images = images_on(keys[i], keys[(i + 1) % len(keys)], t)
        per_step = images.view(L, steps, *images.shape[1:]).transpose(0, 1)  # (T, L, C, H, W)
        frames += [to_pil(grid(f, L, scale=scale)) for f in per_step]
    written.append(out / "walk.gif")
    frames[0].save(written[-1], save_all=True, append_images=frames[1:], duration=80, loop=0)
    return written


# -- the command --------------------------------------------------------------------------------


def _keys(args: argparse.Namespace, latent_dim: int) -> tuple[torch.Tensor, list[str]]:
    """The key points of a latent walk: --latents vectors, else each --seeds' first z."""
    if args.latents:
        keys = load_latents(args.latents, latent_dim)
        return keys, [f"z{i}" for i in range(len(keys))]
    try:
        seeds = [check_seed(int(s)) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if len(seeds) < 2:
        raise GanError(f"--seeds {args.seeds!r}: give 2 or more integers, e.g. --seeds 1,7,42")
    return torch.cat([latents(s, 0, 1, latent_dim) for s in seeds]), [str(s) for s in seeds]


def run(args: argparse.Namespace) -> int:
    """Run `gan generate`."""
    device = resolve_device(args.device, cli=True)
    if args.check_classes or args.interpolate:
        G, cfg, ckpt = load_generator(args.target, device, ema=not args.no_ema)
        classes = model_classes(G, ckpt)
        label = resolve_class(args.klass, classes) if args.klass is not None else None
    if args.check_classes:
        chosen = {label: classes[label]} if label is not None else classes
        from gan.evaluate import check_classes, print_class_table

        print_class_table(
            check_classes(G, cfg, chosen, 100 if args.n is None else args.n, args.seed)
        )
        return 0
    if not args.out:
        raise GanError("--out is required: a new folder or FILE.zip (a folder for --interpolate)")
    if args.interpolate:
        keys, names = _keys(args, G.latent_dim)
        labels = [label] if label is not None else list(classes) or [None]
        paths = interpolate(G, keys, names, args.out, args.steps, args.mode, labels, args.scale)
        print(f"wrote {len(paths)} files to {args.out}: " + ", ".join(p.name for p in paths))
        return 0
    n = 64 if args.n is None else args.n
    out = generate_images(
        args.target, n, args.out, args.seed, args.klass, args.batch, device, not args.no_ema
    )
    where = out / MANIFEST if out.is_dir() else f"{out}:{MANIFEST}"
    print(f"wrote {n} images to {out} (manifest {where})")
    return 0
