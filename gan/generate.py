"""`gan generate`: PNG folders or ZIPs with a manifest, latent walks, and a per-class check."""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from gan.checkpoint import find_checkpoint, load_generator, resolve_device
from gan.classifier import predict
from gan.config import Config, GanError
from gan.data import load_split, to_uint8

MAX_SEED = 2**63 - 1  # seeds are any integer 0 .. MAX_SEED
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same seed gives the same ZIP bytes
MANIFEST = "manifest.csv"
COLUMNS = ("file", "class", "label", "seed", "index", "checkpoint")


# -- latents, labels, pixels --------------------------------------------------------------------


def check_seed(seed: int) -> int:
    """`seed` if it is in 0 .. MAX_SEED, else GanError."""
    if not 0 <= seed <= MAX_SEED:
        raise GanError(f"seed {seed} is out of range; use an integer from 0 to {MAX_SEED}")
    return seed


def latents(seed: int, start: int, n: int, latent_dim: int) -> torch.Tensor:
    """z (n, latent_dim) of images start .. start+n-1 of `seed`, whatever the batching."""
    check_seed(seed)
    # a private generator per image (~30 us): z_i never depends on --batch or the global RNG.
    # numpy's SeedSequence mixes (seed, i) into 128 bits; a torch.Generator keeps only the low
    # 32 bits of its seed, so any packing of (seed, i) into one torch seed repeats images.
    rngs = (np.random.default_rng([seed, i]) for i in range(start, start + n))
    return torch.from_numpy(np.stack([r.standard_normal(latent_dim, np.float32) for r in rngs]))


def model_classes(G: torch.nn.Module, ckpt: dict) -> dict[int, str]:
    """{label: name} of the classes a conditional G was trained on ({} when unconditional)."""
    if not G.num_classes:
        return {}
    names = ckpt.get("class_names") or []
    # a `classes` filter relabels the kept classes 0..k-1 (gan.data), names included
    return {k: names[k] if k < len(names) else f"class_{k}" for k in range(G.num_classes)}


def folder_name(name: str) -> str:
    """A class name as a safe folder name ('T-shirt/top' -> 'T-shirt_top')."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "class"


def resolve_class(spec: str | int, classes: dict[int, str]) -> int:
    """The label of a class given by name (or folder name) or index; GanError listing them."""
    if not classes:
        raise GanError(
            f"class {spec!r}: this generator is unconditional; train one with "
            "--set conditional=true on a labelled dataset to choose classes"
        )
    s = str(spec).strip()
    for k, name in classes.items():  # names first: a folder dataset may name its classes "0", "1"
        if s.lower() in (name.lower(), folder_name(name).lower()):
            return k
    if s.isdigit() and int(s) in classes:
        return int(s)
    listing = ", ".join(f"{k} ({name})" for k, name in classes.items())
    raise GanError(f"class {spec!r} is not one this generator was trained on; choose: {listing}")


def labels_for(start: int, n: int, classes: dict[int, str], label: int | None) -> torch.Tensor:
    """Labels of images start .. start+n-1: `label`, else the trained classes in turn."""
    if label is not None:
        return torch.full((n,), label, dtype=torch.int64)
    order = torch.tensor(list(classes))
    return order[torch.arange(start, start + n) % len(order)]


@torch.no_grad()
def render(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images (B, C, H, W) on the CPU from z (and labels) on the CPU; G in eval mode."""
    device = next(G.parameters()).device
    x = G(z.to(device), None if y is None else y.to(device))
    return to_uint8(x).cpu()


def sample(
    G: torch.nn.Module, classes: dict, seed: int, start: int, n: int, label: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 images, labels or None) of images start .. start+n-1 of `seed`."""
    z = latents(seed, start, n, G.latent_dim)
    y = labels_for(start, n, classes, label) if G.num_classes else None
    return render(G, z, y), y


def to_pil(image: torch.Tensor) -> Image.Image:
    """One uint8 image (C, H, W) as a grayscale or RGB PIL image."""
    a = image.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def png_bytes(image: torch.Tensor) -> bytes:
    """One uint8 image (C, H, W) as PNG bytes."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, scale: int = 1) -> torch.Tensor:
    """uint8 images (N, C, H, W) tiled nrow per row on black, each scaled up `scale` times."""
    if scale > 1:  # nearest-neighbour: the pixels stay as generated
        images = images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    out = torch.zeros(c, rows * (h + pad) + pad, cols * (w + pad) + pad, dtype=torch.uint8)
    for i, img in enumerate(images):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        out[:, top : top + h, left : left + w] = img
    return out


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
            images, y = sample(G, classes, seed, start, min(batch, n - start), label)
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


# -- does a conditional G draw the class it is asked for? ---------------------------------------


def check_classes(
    G: torch.nn.Module, cfg: Config, classes: dict[int, str], n: int = 100, seed: int = 0
) -> list[dict]:
    """Per class: the share of n images the in-domain classifier recognises as that class, and
    their spread (feature diversity relative to the real test images of the class)."""
    from gan.metrics import domain_classifier, mean_pairwise_distance  # torchvision: load late

    if not classes:
        raise GanError("--check-classes: this generator is unconditional; nothing to check")
    if n < 2:
        raise GanError(f"--n {n}: check at least 2 images per class")
    found = domain_classifier(cfg, next(G.parameters()).device)  # trained once, then cached
    if found is None:
        raise GanError(f"--check-classes: dataset {cfg.data_path or cfg.dataset} has no labels")
    clf, info = found
    kept = torch.tensor(info["classes"])  # argmax over the trained classes only, as in metrics
    real = load_split(replace(cfg, limit=0), "test")
    rows = []
    for k, name in classes.items():
        feats, preds = [], []
        for i in range(0, n, 256):
            f, logits = predict(clf, sample(G, classes, seed, i, min(256, n - i), k)[0])
            feats.append(f)
            preds.append(kept[logits[:, kept].argmax(1)])
        pred = torch.cat(preds)
        # recognised alone misses a class collapsed onto one good image: compare its spread
        real_k = real.images[real.labels == k][:n] if real.labels is not None else real.images[:0]
        real_spread = mean_pairwise_distance(predict(clf, real_k)[0]) if len(real_k) > 1 else 0.0
        spread = mean_pairwise_distance(torch.cat(feats))
        top = int(torch.bincount(pred).argmax())
        rows.append(
            {
                "class": k,
                "name": name,
                "n": n,
                "recognised": float((pred == k).float().mean()),
                "seen_as": classes.get(top, str(top)),
                "spread": spread / real_spread if real_spread > 0 else float("nan"),
                "classifier_acc": info["test_acc"],
            }
        )
    return rows


def print_class_table(rows: list[dict], file=None) -> None:
    """The rows of check_classes as a table, with the classifier's own test accuracy."""
    file = file or sys.stdout
    head = f"{'class':>5}  {'name':<14} {'n':>5}  {'recognised':>10}  {'spread':>6}  seen most as"
    print(head, file=file)
    for r in rows:
        line = f"{r['class']:>5}  {r['name']:<14} {r['n']:>5}  {r['recognised']:>10.1%}"
        print(f"{line}  {r['spread']:>6.2f}  {r['seen_as']}", file=file)
    mean = sum(r["recognised"] for r in rows) / len(rows)
    acc = rows[0]["classifier_acc"]
    print(
        f"mean recognised {mean:.1%} (the classifier is right on {acc:.1%} of real test images); "
        "spread: feature diversity / the real class's (1 = as varied, near 0 = collapsed)",
        file=file,
    )


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
