"""How best to add generated images to a limited real set: the utility classifier of gan.utility
(the same small classifier, steps, batch and seeds) trained on the real subset with the
generated images of a finished limited-data run mixed in other ways, each against real alone
and the 1:1 mix that `gan evaluate --utility` reports, in the same run on the same test images.

It reads the `small` row's run of the recipe (its best checkpoint by fd_domain) and trains
nothing else, so run that row first:

    python -m bench small --sizes 1000 --recipes small-plus-r1
    python -m bench augment --sizes 1000 --recipes small-plus-r1
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from bench.rows.small import (
    RECIPES,
    SIZES,
    every_of,
    gan_config,
    gan_run_dir,
    score_config,
    subset_config,
    work_dir,
)

GEN_N = 10_000  # generated images of every mix but the larger draw
LARGER = 50_000
TRUNCATION = 0.6  # z scaled by this: images nearer each class's mode
FILTER_P = 0.5  # a real-only classifier's probability of the drawn class, to keep an image
FINE_TUNE = 0.5  # generated-then-real: the real phase's share of the steps


def generated(G, n: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of the conditional G (classes in turn) from gan.utility's seed, z times scale."""
    from gan.sampling import sample
    from gan.utility import GEN_SEED

    drawn = [sample(G, GEN_SEED, i, min(1000, n - i), truncation=scale) for i in range(0, n, 1000)]
    return torch.cat([x for x, _ in drawn]), torch.cat([y for _, y in drawn])


def protocols(G, train, test, steps: int, n_gen: int = GEN_N, larger: int = LARGER) -> dict:
    """Test accuracy (mean, spread over gan.utility's seeds) of each way of mixing; G eval-mode
    and conditional, train and test labelled gan.data.Images."""
    from gan.classifier import fit_steps, predict
    from gan.utility import BATCH, fit_classifier

    k = max(G.num_classes, int(train.labels.max()) + 1)
    real = (train.images, train.labels)
    gen = generated(G, n_gen)

    def filtered() -> tuple[torch.Tensor, torch.Tensor]:
        judge = fit_classifier([real], k, 100, "cpu", steps)  # a seed none of the others use
        images, labels = generated(G, 3 * n_gen)
        p = predict(judge, images)[1].softmax(1)[torch.arange(len(labels)), labels]
        keep = p > FILTER_P
        return images[keep][:n_gen], labels[keep][:n_gen]

    def then_real(seed: int):
        model = fit_classifier([gen], k, seed, "cpu", steps - int(steps * FINE_TUNE))
        draw_gen = torch.Generator().manual_seed(seed + 1000)

        def draw():
            idx = torch.randint(0, len(real[0]), (BATCH,), generator=draw_gen)
            return real[0][idx], real[1][idx]

        return fit_steps(model.train(), draw, int(steps * FINE_TUNE), "cpu")

    quarter = BATCH // 4
    mixes = {
        "real": lambda s: fit_classifier([real], k, s, "cpu", steps),
        "1:1": lambda s: fit_classifier([real, gen], k, s, "cpu", steps),
        "3:1": lambda s: fit_classifier([real, gen], k, s, "cpu", steps, (3 * quarter, quarter)),
        "1:3": lambda s: fit_classifier([real, gen], k, s, "cpu", steps, (quarter, 3 * quarter)),
        "1:1, 2.5x steps": lambda s: fit_classifier([real, gen], k, s, "cpu", steps * 5 // 2),
        "real, 2.5x steps": lambda s: fit_classifier([real], k, s, "cpu", steps * 5 // 2),
    }
    lazy = {  # other generated sets (how many each holds is saved with its accuracy)
        "1:1, a larger draw": lambda: generated(G, larger),
        "1:1, truncated z": lambda: generated(G, n_gen, TRUNCATION),
        "1:1, filtered": filtered,
    }
    out = {}
    for name, fit in mixes.items():
        out[name] = _score(fit, test)
    for name, make in lazy.items():
        other = make()
        if not len(other[0]):  # the filter kept nothing: no mix to train
            out[name] = {"accuracy": None, "std": None, "seconds": 0.0, "generated": 0}
            continue
        out[name] = _score(lambda s, o=other: fit_classifier([real, o], k, s, "cpu", steps), test)
        out[name]["generated"] = len(other[0])
    out["generated, then real"] = _score(then_real, test)
    return out


def _score(fit, test) -> dict:
    """Test accuracy of fit(seed) over gan.utility's classifier seeds: mean, spread, seconds."""
    from gan.classifier import accuracy
    from gan.utility import UTILITY_SEEDS

    t = time.perf_counter()
    accs = [accuracy(fit(s), test.images, test.labels) for s in UTILITY_SEEDS]
    return {
        "accuracy": statistics.mean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "seconds": time.perf_counter() - t,
    }


def run(args) -> dict:
    """--sizes (the small row's) and --recipes (default small-plus-r1): each finished run's best
    checkpoint under the small row's work dir (small-quick with --quick, 60 classifier steps)."""
    from gan.checkpoint import load_generator
    from gan.config import GanError
    from gan.data import load_split
    from gan.utility import STEPS

    sizes = [int(x) for x in args.sizes.split(",")]
    recipes = args.recipes.split(",") if args.recipes else ["small-plus-r1"]
    work = work_dir() / ("small-quick" if args.quick else "small")
    steps = 60 if args.quick else STEPS
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as the small row's configs say
    out: dict = {
        "steps": steps,
        "truncation": TRUNCATION,
        "filter_p": FILTER_P,
        "fine_tune": FINE_TUNE,
        "recipes": {},
    }
    test, trains = None, {}  # read once each, and only once a run is found to score
    for label in recipes:
        for size in sizes:
            if label not in RECIPES or size not in SIZES:
                raise GanError(
                    f"augment: {label} on {size} images is not a run of the small row; "
                    f"recipes: {', '.join(RECIPES)}; sizes: {', '.join(map(str, SIZES))}"
                )
            epochs = 2 if args.quick else SIZES[size]
            preset, overrides = RECIPES[label]
            every = every_of(size, epochs)
            cfg = gan_config(preset, overrides, size, epochs, every, args.data_dir, device)
            run_dir = gan_run_dir(work, size, label, cfg)
            scores_path = run_dir / "scores.json"
            quick = " --quick" if args.quick else ""
            if not scores_path.is_file():
                raise GanError(
                    f"augment: no scored {label} run on {size} images under {work}; run "
                    f"`python -m bench small --sizes {size} --recipes {label}{quick}` first"
                )
            scores = json.loads(scores_path.read_text())
            done = max(r["epoch"] for r in scores.values())
            if done < epochs:  # the small row's utility too reads finished runs only
                raise GanError(
                    f"augment: the {label} run on {size} images is scored to epoch {done} of "
                    f"{epochs}; run `python -m bench small --sizes {size} --recipes {label}"
                    f"{quick}` to its end first"
                )
            best = min(scores.values(), key=lambda r: r["fd_domain"])
            G, _, _ = load_generator(run_dir / "checkpoints" / best["checkpoint"], device)
            G.eval()
            if test is None:
                test = load_split(score_config(args.data_dir), "test")
            if size not in trains:
                trains[size] = load_split(subset_config(size, args.data_dir), "train")
            n_gen, larger = (1000, 2000) if args.quick else (GEN_N, LARGER)
            res = protocols(G, trains[size], test, steps, n_gen, larger)
            out["recipes"].setdefault(label, {})[str(size)] = {
                "epoch": best["epoch"],
                "fd_domain": best["fd_domain"],
                "mixes": res,
            }
            ref = res["real"]["accuracy"]
            for name, r in res.items():
                if r["accuracy"] is None:
                    print(f"augment {label} {size}: {name:24s} no generated image kept", flush=True)
                    continue
                print(
                    f"augment {label} {size}: {name:24s} {100 * r['accuracy']:6.2f}% "
                    f"+-{100 * r['std']:.2f}  ({100 * (r['accuracy'] - ref):+.2f} vs real)",
                    flush=True,
                )
    return out
