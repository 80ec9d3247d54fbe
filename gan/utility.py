"""What generated images are worth beyond a Frechet distance: do they copy the training set
(memorisation), and do they help a classifier trained on a limited real set (utility: the
Classification Accuracy Score of Ravuri & Vinyals 2019, and its augmentation form)?"""

from __future__ import annotations

import logging
import statistics

import torch
import torch.nn.functional as F

from gan.classifier import Classifier, accuracy, fit_steps
from gan.config import GanError

log = logging.getLogger(__name__)

SIDE = 32  # memorisation compares pixels at most this many per side (area-averaged)
NEAR = 0.01  # a near-copy is closer to a training image than this share of held-out images are


# -- memorisation -------------------------------------------------------------------------------


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, C * h * w) in [0, 1], h, w at most SIDE."""
    x = images.float() / 255
    h, w = x.shape[-2:]
    if max(h, w) > SIDE:
        x = F.adaptive_avg_pool2d(x, (min(h, SIDE), min(w, SIDE)))
    return x.flatten(1)


def nearest_distances(
    queries: torch.Tensor, train: torch.Tensor, batch: int = 1024
) -> torch.Tensor:
    """For each query image, the L2 pixel distance to its nearest training image (uint8 inputs
    of the same shape)."""
    t = _pixels(train)
    out = []
    for i in range(0, len(queries), batch):
        out.append(torch.cdist(_pixels(queries[i : i + batch]), t).min(1).values)
    return torch.cat(out) if out else torch.zeros(0)


def memorisation(fake: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict:
    """How close generated images are to the training set, against held-out real images:
    memorisation_ratio = mean nearest-training-image distance of the fakes / that of held-out
    real images (1: as far as new real images; well under 1: G copies), and near_copies = the
    share of fakes closer to a training image than all but NEAR of held-out images are (about
    NEAR when G does not copy). Distances in pixels, at most SIDE x SIDE."""
    if len(heldout) < 2 or len(train) < 1:
        raise GanError(
            "memorisation needs held-out real images and a training set; for a folder or ZIP "
            "dataset set holdout above 0 (e.g. holdout=0.1)"
        )
    d_fake = nearest_distances(fake, train)
    d_real = nearest_distances(heldout, train)
    threshold = torch.quantile(d_real, NEAR)
    return {
        "memorisation_ratio": float(d_fake.mean() / d_real.mean().clamp(min=1e-12)),
        "near_copies": float((d_fake < threshold).float().mean()),
        "near_copies_heldout": NEAR,
        "memorisation_space": f"pixels<={SIDE}px",
    }


# -- utility --------------------------------------------------------------------------------------

UTILITY_GEN = 10_000  # generated images a utility classifier trains on (an equal share a class)
UTILITY_SEEDS = (0, 1, 2)  # classifier seeds: each set's accuracy is a mean over these
STEPS, BATCH = 800, 64  # the same training for every set: 51k images seen, ~5 s on a CPU core
GEN_SEED = 7  # the generated training images: not the evaluation's images (EVAL_SEED)


def fit_classifier(
    sets: list[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    seed: int,
    device,
    steps: int = STEPS,
    shares: tuple[int, ...] = (),
) -> Classifier:
    """The fixed small classifier (gan.classifier.Classifier) trained for STEPS batches of
    BATCH uint8 images, each batch drawn equally from every set in `sets` (real and generated
    images weigh the same however many there are of each), or `shares[i]` images of set i."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(seed)
        model = Classifier(sets[0][0].shape[1], num_classes).to(device)
    shares = shares or (BATCH // len(sets),) * len(sets)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for (images, labels), share in zip(sets, shares, strict=True):
            idx = torch.randint(0, len(images), (share,), generator=gen)
            xs.append(images[idx])
            ys.append(labels[idx])
        return torch.cat(xs), torch.cat(ys)

    return fit_steps(model, draw, steps, device)


def utility(G, train, test, device="cpu", n_gen: int = 0, steps: int = 0) -> dict:
    """Test accuracy of the fixed classifier trained on (a) the real training set, (b) it plus
    n_gen images of the class-conditional G, (c) those generated images alone: the mean and
    spread over UTILITY_SEEDS. `train` and `test` are gan.data.Images with labels; n_gen and
    steps default to UTILITY_GEN and STEPS."""
    n_gen, steps = n_gen or UTILITY_GEN, steps or STEPS
    if not G.num_classes:
        raise GanError(
            "utility: the generator is unconditional, so its images have no labels to train a "
            "classifier on; train with conditional=true on a labelled dataset"
        )
    if train.labels is None or test.labels is None or len(test) == 0:
        raise GanError(
            "utility: needs a labelled dataset with held-out images (class subfolders; for a "
            "folder or ZIP, holdout above 0)"
        )
    from gan.sampling import sample

    was_training = G.training
    G.eval()
    try:
        fake = [sample(G, GEN_SEED, i, min(1000, n_gen - i)) for i in range(0, n_gen, 1000)]
    finally:
        G.train(was_training)
    generated = (torch.cat([x for x, _ in fake]), torch.cat([y for _, y in fake]))
    real = (train.images, train.labels)
    k = max(G.num_classes, int(train.labels.max()) + 1)
    out: dict = {"utility_gen": n_gen, "utility_seeds": len(UTILITY_SEEDS), "utility_steps": steps}
    for name, sets in (
        ("real", [real]),
        ("real_plus_generated", [real, generated]),
        ("generated_only", [generated]),
    ):
        accs = [
            accuracy(fit_classifier(sets, k, seed, device, steps), test.images, test.labels)
            for seed in UTILITY_SEEDS
        ]
        out[f"utility_{name}"] = statistics.mean(accs)
        out[f"utility_{name}_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
        log.info("utility %s: %s", name, " ".join(f"{a:.4f}" for a in accs))
    out["utility_gain"] = out["utility_real_plus_generated"] - out["utility_real"]
    return out
