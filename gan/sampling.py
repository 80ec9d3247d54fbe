"""One way to draw images from a generator, used by training's evaluation and sample grids,
`gan evaluate`, `gan generate` and `gan serve`.

Image i of seed s is G(z_i, y_i): z_i comes from numpy's SeedSequence (s, i) alone, and a
conditional G gets y_i = the i-th of its classes in turn (an equal share of each). An image never
depends on the batching, the device or the global RNG, so the images a score was computed on are
the images a grid shows and a D accuracy is measured on."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from gan.config import GanError
from gan.data import to_uint8

MAX_SEED = 2**63 - 1  # seeds are any integer 0 .. MAX_SEED
GRID_MAX_CLASSES = 16  # a conditional sample grid gets one column per class up to this many
EVAL_SEED = 2020  # every evaluation draws the same images: epochs compare like with like


# -- latents and labels -------------------------------------------------------------------------


def check_seed(seed: int) -> int:
    """`seed` if it is in 0 .. MAX_SEED, else GanError."""
    if not 0 <= seed <= MAX_SEED:
        raise GanError(f"seed {seed} is out of range; use an integer from 0 to {MAX_SEED}")
    return seed


def latents(seed: int, start: int, n: int, latent_dim: int) -> torch.Tensor:
    """z (n, latent_dim) on the CPU of images start .. start+n-1 of `seed`."""
    check_seed(seed)
    # a private generator per image (~30 us): z_i never depends on the batching or the global
    # RNG. numpy's SeedSequence mixes (seed, i) into 128 bits; a torch.Generator keeps only the
    # low 32 bits of its seed, so any packing of (seed, i) into one torch seed repeats images.
    rngs = (np.random.default_rng([seed, i]) for i in range(start, start + n))
    return torch.from_numpy(np.stack([r.standard_normal(latent_dim, np.float32) for r in rngs]))


def labels_for(
    start: int, n: int, classes: Iterable[int], label: int | None = None
) -> torch.Tensor:
    """Labels of images start .. start+n-1: `label`, else `classes` in turn."""
    if label is not None:
        return torch.full((n,), label, dtype=torch.int64)
    order = torch.tensor(list(classes), dtype=torch.int64)
    return order[torch.arange(start, start + n) % len(order)]


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


# -- images -------------------------------------------------------------------------------------


@torch.no_grad()
def render(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images (B, C, H, W) on the CPU from z (and labels) on the CPU; G in eval mode."""
    device = next(G.parameters()).device
    x = G(z.to(device), None if y is None else y.to(device))
    return to_uint8(x).cpu()  # rounded: a plain uint8 cast truncates and biases FID


def sample(
    G: torch.nn.Module,
    seed: int,
    start: int,
    n: int,
    label: int | None = None,
    classes: Iterable[int] | None = None,
    truncation: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 images, labels or None) of images start .. start+n-1 of `seed`. A conditional G
    draws `label`, else `classes` (default all of its classes) in turn; `truncation` < 1 scales
    each z towards 0 (typical images, less variety)."""
    z = latents(seed, start, n, G.latent_dim) * truncation
    y = None
    if G.num_classes:
        y = labels_for(start, n, range(G.num_classes) if classes is None else classes, label)
    return render(G, z, y), y


def batches(
    G: torch.nn.Module, n: int, batch_size: int, seed: int = EVAL_SEED
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Images 0 .. n-1 of `seed` as (uint8 images, labels) batches; G stays in its mode."""
    for start in range(0, n, batch_size):
        yield sample(G, seed, start, min(batch_size, n - start))


def grid(
    images: torch.Tensor, nrow: int = 8, pad: int = 2, scale: int = 1, fill: int = 0
) -> torch.Tensor:
    """uint8 images (N, C, H, W) tiled nrow per row, `pad` pixels of `fill` around each (black by
    default), each scaled up `scale` times; one image comes back as itself, unpadded. The layout
    of torchvision's make_grid, with the images' own channels (make_grid makes 1 into 3)."""
    if scale > 1:  # nearest-neighbour: the pixels stay as generated
        images = images.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    n, c, h, w = images.shape
    if n == 1:
        return images[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    out = images.new_full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), fill)
    for i, image in enumerate(images):
        y, x = (i // cols) * (h + pad) + pad, (i % cols) * (w + pad) + pad
        out[:, y : y + h, x : x + w] = image
    return out


def grid_columns(n_cls: int) -> int:
    """Columns of a sample grid: one per class for a conditional G of at most GRID_MAX_CLASSES
    classes, else 8; a grid has 8 rows."""
    return n_cls if 0 < n_cls <= GRID_MAX_CLASSES else 8


def sample_grid(G: torch.nn.Module, seed: int) -> torch.Tensor:
    """A run's sample grid, images 0 .. n-1 of `seed` as a float (C, H, W) in [0, 1]: 8 rows of
    8, or for a conditional G of at most 16 classes 8 rows with one column per class (labels in
    turn). G is left in its mode."""
    cols = grid_columns(G.num_classes)
    was = G.training
    G.eval()
    try:
        images, _ = sample(G, seed, 0, 8 * cols)
    finally:
        G.train(was)
    return grid(images, cols).float() / 255


def to_pil(image: torch.Tensor) -> Image.Image:
    """One uint8 image (C, H, W) as a grayscale or RGB PIL image."""
    a = image.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def png_bytes(image: torch.Tensor) -> bytes:
    """One uint8 image (C, H, W) as PNG bytes."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()
