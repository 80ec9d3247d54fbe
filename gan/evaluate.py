"""`gan evaluate RUN_DIR|CHECKPOINT|EXPERIMENT_DIR ...`: FID (with the weights that made it),
fd_domain and class coverage, discriminator accuracy, diversity and a real-vs-generated grid per
run, written to <run>/evaluation.json and .png; several runs give one comparison table; and
`gan generate --check-classes`: does a conditional G draw the class it is asked for? Every run
also gets a memorisation check (gan.utility), and with --utility the accuracy a classifier gains
from its images."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from gan.checkpoint import find_checkpoint, load_generator
from gan.classifier import domain_classifier, mean_pairwise_distance, predict
from gan.config import (
    PROTOCOLS,
    SCORE_KEYS,
    Config,
    GanError,
    make_config,
    parse_overrides,
    to_dict,
)
from gan.data import data_key, load_split, to_float
from gan.device import resolve_device
from gan.metrics import Evaluator, Weights, make_evaluator
from gan.sampling import EVAL_SEED, grid, png_bytes, sample
from gan.table import text_table
from gan.utility import memorisation, utility

D_SAMPLES = 2000  # images per side for the discriminator's accuracy
GRID = 64  # images per side of the real-vs-generated grid
HELDOUT = 5000  # held-out real images the memorisation check compares with, at most


# -- finding runs -----------------------------------------------------------------------------


def _checkpoint_of(run: Path) -> Path | None:
    """A run dir's checkpoint (best, else newest), or a Ray trial dir's newest checkpoint."""
    ckpts = run / "checkpoints"
    if ckpts.is_dir() and any(ckpts.glob("*.pt")):
        return find_checkpoint(run)
    ray = sorted(run.glob("checkpoint_*/checkpoint.pt"))
    return ray[-1] if ray else None


def find_runs(paths: list[str]) -> list[Path]:
    """Checkpoint files to evaluate: files as given, a run dir's, or every run under a folder."""
    found = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
            continue
        if not p.is_dir():
            raise GanError(f"{p} does not exist; pass a run dir, a checkpoint or an experiment dir")
        stack, before = [p], len(found)
        while stack:  # top-down; a run's own subfolders are not searched again
            folder = stack.pop()
            ckpt = _checkpoint_of(folder)
            if ckpt is not None:
                found.append(ckpt)
            else:
                stack.extend(sorted((d for d in folder.iterdir() if d.is_dir()), reverse=True))
        if len(found) == before:
            raise GanError(f"{p} holds no checkpoints; train first (gan train / make tune)")
    return found


def run_dir_of(ckpt: Path) -> Path:
    """The run a checkpoint belongs to (outputs go there)."""
    parent = ckpt.parent
    if parent.name == "checkpoints" or parent.name.startswith("checkpoint_"):
        return parent.parent
    return parent


# -- the extras beyond Evaluator: D accuracy and the grid ------------------------------------


@torch.no_grad()
def d_accuracy(D, images: torch.Tensor, labels: torch.Tensor | None, real: bool) -> float:
    """Share of images D classifies right (logit > 0 means real), seed 002's D accuracy."""
    device = next(D.parameters()).device
    right = 0
    for i in range(0, len(images), 256):
        x = to_float(images[i : i + 256].to(device))
        y = None if labels is None else labels[i : i + 256].to(device)
        logits = D(x, y)
        right += ((logits > 0) if real else (logits < 0)).sum().item()
    return right / max(1, len(images))


def side_by_side(real: torch.Tensor, fake: torch.Tensor, path: Path) -> None:
    """Write a PNG: a grid of real images left, generated right, on white."""
    grids = [grid(x[:GRID], 8, 2, fill=255) for x in (real, fake)]
    height = max(g.shape[1] for g in grids)  # a short test split gives a shorter real grid
    grids = [torch.nn.functional.pad(g, (0, 0, 0, height - g.shape[1]), value=255) for g in grids]
    gap = grids[0].new_full((grids[0].shape[0], height, 16), 255)
    Path(path).write_bytes(png_bytes(torch.cat([grids[0], gap, grids[1]], dim=2)))


# -- one run ----------------------------------------------------------------------------------


def eval_config(cfg: Config, args) -> Config:
    """The run's config with the evaluation's settings."""
    values = {"metric": args.metric, "kid": args.kid, "prc": args.prc}
    if args.protocol:
        proto = PROTOCOLS[args.protocol]
        if cfg.dataset != proto["dataset"]:
            raise GanError(
                f"--protocol {args.protocol} is for {proto['dataset']}, not {cfg.dataset}"
            )
        values.update(proto["values"], metric="fid")
    if args.samples:
        values["fid_samples"] = args.samples
    if args.fid_weights:
        values["fid_weights"] = args.fid_weights
    if args.data_dir:
        values["data_dir"] = args.data_dir
    values.update(parse_overrides(getattr(args, "set", None) or []))  # --set KEY=VALUE: last word
    return make_config(values, base=cfg)


def evaluate_run(ckpt: Path, args, evaluators: dict) -> dict:
    """Score one checkpoint; writes evaluation.json and evaluation.png into its run dir."""
    from gan.models import build_models

    device = resolve_device(args.device, cli=True)
    G, cfg, state = load_generator(ckpt, device)
    cfg = eval_config(cfg, args)
    key = (data_key(cfg, "train"), data_key(cfg, cfg.fid_ref_split))
    key += tuple(getattr(cfg, k) for k in SCORE_KEYS)
    if key not in evaluators:  # runs of one experiment share the real statistics and classifier
        evaluators[key] = make_evaluator(cfg, device)
    ev: Evaluator = evaluators[key]
    out = {"checkpoint": str(ckpt), "epoch": state.get("epoch"), "arch": cfg.arch}
    out.update(dataset=cfg.dataset, protocol=args.protocol, samples=cfg.fid_samples)
    out.update(ev.evaluate(G))
    if "fid" in out:
        out["fid_label"] = Weights("", out["fid_weights"], out["fid_standard"]).label
    if args.protocol:
        proto = PROTOCOLS[args.protocol]
        out["published"] = proto["published"]
        issues = [
            what
            for what, bad in (
                ("non-standard Inception weights", not out["fid_standard"]),
                (f"{cfg.fid_samples} samples", cfg.fid_samples != proto["values"]["fid_samples"]),
                (f"image_size {cfg.image_size}", cfg.image_size != 28),
                (f"{cfg.channels} channels", cfg.channels != 1),
                ("a class filter", bool(cfg.classes)),
            )
            if bad
        ]
        out["comparable"] = not issues  # with the published numbers
        if issues:
            print(f"note: not comparable with {proto['published']}: {', '.join(issues)}")
    # discriminator accuracy on held-out real images and on fakes (seed 002)
    test = load_split(cfg, "test")
    n = min(D_SAMPLES, max(cfg.fid_samples, GRID))
    fake, y_fake = sample(G, EVAL_SEED, 0, n)  # the first images FID scored
    _, D = build_models(cfg, state.get("num_classes", 0))
    D.load_state_dict(state["D"])
    D = D.to(device).eval()
    y_real = test.labels[:n] if G.num_classes else None
    out["d_acc_real"] = d_accuracy(D, test.images[:n], y_real, real=True) if len(test) else None
    out["d_acc_fake"] = d_accuracy(D, fake, y_fake, real=False)
    # does G copy its training images? the fakes' nearest-training-image distance against that
    # of held-out real images (the same n generated images FID scored first)
    train = load_split(cfg, "train")
    if len(test) >= 2:
        fakes = fake if n >= cfg.fid_samples else sample(G, EVAL_SEED, 0, cfg.fid_samples)[0]
        out.update(memorisation(fakes, train.images, test.images[:HELDOUT]))
    else:
        print(f"note: no held-out images in {cfg.data_path or cfg.dataset}: no memorisation check")
    if getattr(args, "utility", False):
        out.update(utility(G, train, test, device))
    run = run_dir_of(ckpt)
    real = test.images if len(test) else load_split(cfg, "train").images
    side_by_side(real, fake, run / "evaluation.png")
    out["grid"] = str(run / "evaluation.png")
    out["run_dir"] = str(run)
    out["config"] = to_dict(cfg)
    (run / "evaluation.json").write_text(json.dumps(out, indent=2, default=float))
    return out


# -- does a conditional G draw the class it is asked for? ---------------------------------------


def check_classes(
    G: torch.nn.Module, cfg: Config, classes: dict[int, str], n: int = 100, seed: int = 0
) -> list[dict]:
    """Per class: the share of n images the in-domain classifier recognises as that class, and
    their spread (feature diversity relative to the real test images of the class)."""
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
            f, logits = predict(clf, sample(G, seed, i, min(256, n - i), k)[0])
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


# -- the table --------------------------------------------------------------------------------


def _fmt(v, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def table(rows: list[dict]) -> str:
    """One comparison table of evaluations, best first by the headline metric."""
    head = "fid" if any("fid" in r for r in rows) else "fd_domain"
    rows = sorted(rows, key=lambda r: r.get(head, math.inf))
    cols = [
        ("run", None),
        ("epoch", None),
        ("FID", "fid"),
        ("KID", "kid_mean"),
        ("prec", "precision"),
    ]
    cols += [("recall", "recall"), ("fd_domain", "fd_domain"), ("cov_min", "class_coverage_min")]
    cols += [("entropy", "class_entropy"), ("diversity", "diversity")]
    cols += [("D_real", "d_acc_real"), ("D_fake", "d_acc_fake")]
    cols += [("memorised", "memorisation_ratio"), ("copies", "near_copies")]
    cols += [("acc_real", "utility_real"), ("acc_real+gen", "utility_real_plus_generated")]
    cols += [("acc_gen", "utility_generated_only")]
    cols = [(name, k) for name, k in cols if k is None or any(k in r for r in rows)]
    lines, notes = [], set()
    for r in rows:
        cells = [Path(r["run_dir"]).name, _fmt(r.get("epoch"))]
        for _, k in cols[2:]:
            cell = _fmt(r.get(k))
            if k == "fid" and "fid" in r and not r["fid_standard"]:
                cell += "*"
                notes.add(r["fid_weights"])
            cells.append(cell)
        lines.append(cells)
    text = [text_table([[name for name, _ in cols], *lines])]
    for sha in sorted(notes):
        text.append(f"* FID* (non-standard weights {sha}): not comparable with published FIDs")
    if any("memorisation_ratio" in r for r in rows):
        text.append(
            "memorised: nearest-training-image pixel distance of the generated images over that "
            "of held-out real images (1: none; well under 1: G copies); copies: share of "
            "generated images closer to a training image than 99% of held-out ones (~0.01: none)"
        )
    return "\n".join(text)


def run(args) -> int:
    """Evaluate every run found under args.paths and print one table."""
    rows, evaluators = [], {}
    for ckpt in find_runs(args.paths):
        print(f"evaluating {ckpt}", flush=True)
        rows.append(evaluate_run(ckpt, args, evaluators))
    print(table(rows))
    if args.protocol:
        proto = PROTOCOLS[args.protocol]
        print(f"protocol {args.protocol}: {proto['about']}; published: {proto['published']}")
    if len(rows) > 1 and len(args.paths) == 1 and Path(args.paths[0]).is_dir():
        summary = Path(args.paths[0]) / "evaluation_summary.json"
        summary.write_text(json.dumps(rows, indent=2, default=float))
        print(f"summary: {summary}")
    return 0
