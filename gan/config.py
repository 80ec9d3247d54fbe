"""One flat, frozen config: its field names are the YAML keys, the `--set` keys and Ray's keys.

Each field declares, beside its default, what the rest of the package needs to know about its
key (allowed values, whether a run may resume under a new value, ...); the lists other modules
use (CHOICES, RETUNABLE, RESUMABLE, PATH_KEYS, INPUT_KEYS, NOT_SEARCHABLE, DATA_KEYS, SCORE_KEYS)
and the key table of docs/config.md (gan.config_docs) are derived from it."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import yaml


class GanError(Exception):
    """A problem the user can fix (bad config, data, checkpoint or weights); the CLI prints it."""


def key(
    default: object,
    doc: str,
    *,
    choices: tuple = (),
    subset: tuple[str, ...] = (),
    range: str = "",  # noqa: A002  (the interval as the docs show it: "[0, 1)", "(0, inf)")
    resume: bool = False,
    retune: bool = False,
    path: bool = False,
    input: bool = False,  # noqa: A002
    data: bool = False,
    score: bool = False,
    search: bool = True,
) -> dataclasses.Field:
    """A Config field and what its key means elsewhere:
    doc      one line for the key table (docs/config.md);
    choices  the values allowed; subset: a comma-separated subset of these is allowed;
    range    the interval a number must lie in, as written in the docs;
    resume   a run may resume under a new value (its checkpoint stays meaningful); off by
             default, so that a new key never silently changes a resumed run;
    retune   the new value applies from the resumed epoch on (optimiser moments kept): what a
             Population Based Training exploit mutates; implies resume;
    path     a file or directory, made absolute before trials run in their own directories;
    input    a tune checks every searched value of it before starting (what a trial reads);
    data     names the prepared data (gan.data.data_key): a new value prepares it anew;
    score    changes the evaluator's real statistics or models (as the data keys do, through
             data_key): runs that differ in it cannot share one evaluator;
    search   a tune may search it."""
    meta = {"doc": doc, "choices": tuple(choices), "subset": tuple(subset), "range": range}
    meta.update(resume=resume or retune, retune=retune, path=path, input=input, data=data)
    meta.update(score=score, search=search)
    return dataclasses.field(default=default, metadata=meta)


DIFFAUG = ("color", "translation", "cutout")  # gan.diffaug.POLICIES, named here without torch
ARCH_NAMES = ("baseline", "modified", "dcgan", "resnet")  # gan.models.ARCHS, without torch
DATASETS = ("fashion_mnist", "mnist", "cifar10", "folder", "zip", "fake")


@dataclass(frozen=True)
class Config:
    name: str = key(
        "fmnist",
        "run / experiment name; the run directory is OUT/NAME by default",
        resume=True,
        search=False,
    )
    # -- data ---------------------------------------------------------------------------------
    dataset: str = key(
        "fashion_mnist",
        "where images come from (fake: seeded class-conditional noise, for smoke runs)",
        choices=DATASETS,
        input=True,
        data=True,
    )
    data_path: str = key(
        "",
        "image folder (subfolders are classes) or ZIP archive, for the folder and zip datasets",
        path=True,
        input=True,
        data=True,
    )
    data_dir: str = key(
        "data",
        "where torchvision downloads and prepared tensors and statistics are cached",
        resume=True,
        path=True,
        input=True,
        score=True,
    )
    classes: tuple[int, ...] = key(
        (), "keep only these labels, relabelled 0..k-1 (empty: all)", input=True, data=True
    )
    channels: int = key(
        1, "1 (grayscale) or 3 (RGB); images are converted to this", choices=(1, 3), data=True
    )
    image_size: int = key(
        28,
        "square side in pixels, any size (28, 32, 64, 100, ...): center crop, antialiased resize",
        range="[8, inf)",
        data=True,
    )
    limit: int = key(
        0, "use only the first N training images (0: all)", range="[0, inf)", data=True
    )
    balanced: bool = key(
        False, "limit draws a fixed random, class-balanced N instead of the first N", data=True
    )
    holdout: float = key(
        0.1,
        "held-out fraction for folder/zip (torchvision sets use their test split)",
        range="[0, 0.9)",
        data=True,
    )
    hflip: bool = key(False, "augmentation of real images: random horizontal flip")
    rotate: float = key(
        0.0, "augmentation: random rotation in [-rotate, rotate] degrees", range="[0, inf)"
    )
    zoom: float = key(0.0, "augmentation: random zoom in [1 - zoom, 1 + zoom]", range="[0, 1)")
    # ZIP bombs: a member's or the archive's unpacked size is checked against these from its
    # header, then again while it is read in chunks (headers can lie)
    zip_member_max_bytes: int = key(
        1 << 27, "most bytes one ZIP member may unpack to (128 MiB)", range="[1, inf)", resume=True
    )
    zip_max_bytes: int = key(
        1 << 34,
        "most bytes all of a ZIP's image members may unpack to (16 GiB)",
        range="[1, inf)",
        resume=True,
    )
    # -- model --------------------------------------------------------------------------------
    arch: str = key("dcgan", "generator/discriminator pair (gan.models.ARCHS)", choices=ARCH_NAMES)
    latent_dim: int = key(100, "size of z", range="[1, inf)")
    width: int = key(
        64,
        "channel width of the narrowest conv stage; wider stages are multiples",
        range="[1, inf)",
    )
    upsample: str = key(
        "default",
        "G's upsampling (default: the arch's own)",
        choices=("default", "transposed", "nearest", "pixelshuffle"),
    )
    spectral_norm: bool = key(False, "spectral normalization on every D layer")
    d_noise: float = key(
        0.0, "std of Gaussian noise added to D's input while training D", range="[0, inf)"
    )
    d_dropout: float = key(
        0.0, "dropout after each D conv stage (dcgan uses 0.3 in its presets)", range="[0, 1)"
    )
    conditional: bool = key(False, "class-conditional G (label embedding) and D (projection)")
    # -- optimisation -------------------------------------------------------------------------
    epochs: int = key(20, "passes over the training set", range="[1, inf)", resume=True)
    batch_size: int = key(64, "images per step", range="[1, inf)")
    lr_g: float = key(2.0e-4, "Adam learning rate of G", range="(0, inf)", retune=True)
    lr_d: float = key(2.0e-4, "Adam learning rate of D", range="(0, inf)", retune=True)
    beta1: float = key(0.5, "Adam beta1 (0.5 is the DCGAN choice)", range="[0, 1)", retune=True)
    beta2: float = key(0.999, "Adam beta2", range="[0, 1)", retune=True)
    # the same shape at 10 or 1000 epochs
    lr_end: float = key(
        1.0,
        "the learning rates decay exponentially over the run to lr_end x their start (1.0: off)",
        range="(0, 1]",
    )
    # the older per-epoch form (1.0: off), kept so that old configs and checkpoints resume as
    # before; over 1000 epochs 0.85 ends at 1e-71 x: a longer run wants lr_end
    lr_decay: float = key(
        1.0,
        "the older per-epoch decay factor of the learning rates (1.0: off); prefer lr_end",
        range="(0, 1]",
    )
    loss: str = key("bce", "bce (non-saturating) or hinge", choices=("bce", "hinge"))
    label_smoothing: float = key(
        0.0, "D's real target is 1 - label_smoothing (bce only)", range="[0, 1)", retune=True
    )
    label_noise: float = key(
        0.0,
        "chance of flipping each of D's real/fake targets (bce only)",
        range="[0, 1)",
        retune=True,
    )
    d_steps: int = key(1, "D updates per G update", range="[1, inf)")
    ema_decay: float = key(
        0.999, "EMA of G's weights for sampling and evaluation (0: off)", range="[0, 1)"
    )
    # EMA warm-up (StyleGAN2-ADA's ema_rampup): the EMA's half-life, in images, is at most this
    # fraction of the images seen so far, so G_ema tracks G early on (0: the fixed ramp
    # min(ema_decay, (1 + step) / (10 + step)) of older runs)
    ema_rampup: float = key(
        0.0,
        "EMA warm-up: its half-life is at most this fraction of the images seen (0: a fixed ramp)",
        range="[0, 1]",
    )
    # the EMA's half-life as a fraction of the run's G steps, the same share of a 10- or a
    # 1000-epoch run, in place of ema_decay's fixed half-life (0: ema_decay's)
    ema_horizon: float = key(
        0.0,
        "the EMA's half-life as a fraction of the run's G steps, in place of ema_decay's (0: off)",
        range="[0, 1]",
    )
    # -- techniques of the strongest recipes (all off by default) ----------------------------
    diffaug: str = key(
        "", "DiffAugment on all D sees, comma-separated ops ('': off)", subset=DIFFAUG
    )
    r1_gamma: float = key(
        0.0,
        "R1 penalty (gamma / 2) E|grad_x D(x)|^2 on real images (0: off)",
        range="[0, inf)",
        retune=True,
    )
    r1_every: int = key(16, "lazy R1 (StyleGAN2): every N D steps, weighted by N", range="[1, inf)")
    # adaptive augmentation (ADA's r_t heuristic): each diffaug op reaches an image with a
    # probability p, raised while the share of real images D calls real (E[sign D(x)]) is above
    # this target (ADA: 0.6) and lowered below it, from 0 (0: every op reaches every image)
    ada_target: float = key(
        0.0,
        "adaptive DiffAugment: target share of reals D calls real (ADA: 0.6; 0: ops always on)",
        range="[0, 1)",
    )
    lecam: float = key(
        0.0,
        "LeCam regularisation of D, its weight (Tseng et al. 2021: 0.3; 0: off)",
        range="[0, inf)",
    )
    # -- hardware and reproducibility ---------------------------------------------------------
    amp: bool = key(True, "bf16 autocast on CUDA (ignored on CPU)", resume=True)
    compile: bool = key(
        False, "torch.compile G and D, falling back to eager if it fails", resume=True
    )
    device: str = key("auto", "auto, cpu, cuda or cuda:N", resume=True)
    seed: int = key(0, "same seed + config on CPU gives the same losses")
    # -- logging, checkpoints, evaluation -----------------------------------------------------
    sample_every: int = key(
        1, "epochs between sample grids (0: only at the end)", range="[0, inf)", resume=True
    )
    checkpoint_every: int = key(
        1, "epochs between checkpoints (0: only at the end)", range="[0, inf)", resume=True
    )
    keep_checkpoints: int = key(
        3,
        "newest checkpoints kept on disk (the best one is kept apart)",
        range="[1, inf)",
        resume=True,
    )
    eval_every: int = key(
        0,
        "epochs between evaluations (0: only at the end; -1: never)",
        range="[-1, inf)",
        resume=True,
    )
    metric: str = key(
        "fid",
        "the number reported to the tuner and kept best (fd_domain: in-domain, offline)",
        choices=("fid", "fd_domain"),
        resume=True,
        input=True,
        score=True,
        search=False,
    )
    fid_samples: int = key(
        5000,
        "generated images per evaluation (compare FIDs at equal N only)",
        range="[2, inf)",
        resume=True,
        score=True,
    )
    fid_ref_split: str = key(
        "test",
        "real statistics from the train or test split",
        choices=("train", "test"),
        resume=True,
        score=True,
    )
    fid_weights: str = key(
        "",
        "local Inception weights file (default: $GAN_FID_WEIGHTS or the standard download)",
        resume=True,
        path=True,
        input=True,
        score=True,
    )
    # torch.compile Inception with its weights frozen: faster FID evaluations after a one-off
    # compile (README, Benchmarks: the FID row), falling back to eager if it fails
    fid_compile: bool = key(
        False,
        "torch.compile Inception, weights frozen: faster evaluations after a one-off compile",
        resume=True,
        score=True,  # a compiled Inception scores ~1e-4 apart from an eager one
    )
    kid: bool = key(
        False, "also compute KID at each evaluation", resume=True, input=True, score=True
    )
    prc: bool = key(
        False, "also compute precision/recall (needs VGG16 weights)", resume=True, score=True
    )


FIELDS = {f.name: f for f in fields(Config)}
_HINTS = typing.get_type_hints(Config)
# each key's metadata; a field declared without key() gets the defaults (and no doc line, which
# tests/test_config_keys.py refuses): fixed on resume, not a path, not data, searchable
META = {k: {**key(None, "").metadata, **f.metadata} for k, f in FIELDS.items()}


def keys_where(flag: str) -> tuple[str, ...]:
    """The config keys whose metadata sets `flag` (one of key()'s flags), in field order."""
    return tuple(k for k, meta in META.items() if meta[flag])


CHOICES = {k: meta["choices"] for k, meta in META.items() if meta["choices"]}
# keys a run may resume under new values and go on from its checkpoint (optimiser moments kept):
# what a Population Based Training exploit mutates, or a user lowers for the rest of a run
RETUNABLE = keys_where("retune")
# keys that may change when a run resumes (gan.train.check_resumable); any other would make
# the checkpoint meaningless. RETUNABLE keys apply from the resumed epoch on (TrainState.retune)
RESUMABLE = frozenset(keys_where("resume"))
PATH_KEYS = keys_where("path")  # tune trials run in their own cwd: made absolute first
INPUT_KEYS = keys_where("input")  # what a trial reads: a tune checks each searched value first
NOT_SEARCHABLE = tuple(k for k, meta in META.items() if not meta["search"])
DATA_KEYS = keys_where("data")  # what names the prepared data (gan.data.data_key)
# with the data keys, what makes an evaluator's real statistics and models (gan.metrics): runs
# that agree on these share one evaluator (gan.evaluate)
SCORE_KEYS = keys_where("score")

# named protocols: the settings under which a FID compares with published numbers
PROTOCOLS = {
    "fmnist-10k": {
        "dataset": "fashion_mnist",
        "values": {"fid_samples": 10000, "fid_ref_split": "test"},
        "about": "10k generated vs the 10k Fashion-MNIST test images, 28x28 grayscale",
        "published": "Lucic et al. 2018 (best 21.5); PA-GAN 15.8",
    },
}


def lr_gamma(cfg: Config) -> float:
    """The learning rates' factor per epoch: lr_end spread over the run's epochs, or lr_decay."""
    return cfg.lr_end ** (1.0 / cfg.epochs) if cfg.lr_end < 1.0 else cfg.lr_decay


def uses_ema(cfg: Config) -> bool:
    """Whether the run keeps an EMA copy of G."""
    return cfg.ema_decay > 0 or cfg.ema_horizon > 0


def _coerce(key: str, value: object) -> object:
    """Convert one raw value (from YAML, the CLI or Ray) to the field's type, or raise GanError."""
    kind = _HINTS[key]
    bad = GanError(
        f"config key '{key}': {value!r} is not a valid {getattr(kind, '__name__', kind)}"
    )
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, bool):
            raise bad
        if not isinstance(value, (int, float, str)):  # PyYAML reads 1e-4 as a string
            raise bad
        try:
            number = float(value)
        except (ValueError, OverflowError):  # OverflowError: an int beyond any float
            raise bad from None
        if not math.isfinite(number):  # inf and nan pass every range check below
            raise GanError(f"config key '{key}': {value!r} is not a finite number")
        return number
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad
    # tuple[int, ...]: a list, a tuple, an int or "0,2,5"
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (list, tuple)):
        try:
            return tuple(sorted({int(v) for v in value}))
        except (TypeError, ValueError):
            raise bad from None
    raise bad


def _outside(text: str, value: float) -> str | None:
    """Why value lies outside the interval `text` ("[0, 1)", "(0, inf)"), or None if inside."""
    low, high = (float(v) for v in text[1:-1].split(","))
    closed_low, closed_high = text[0] == "[", text[-1] == "]"
    if (value >= low if closed_low else value > low) and (
        value <= high if closed_high else value < high
    ):
        return None
    if high < math.inf:
        return f"must be in {text}"
    if low == 0:
        return "must not be negative" if closed_low else "must be positive"
    return f"must be at least {low:g}" if closed_low else f"must be above {low:g}"


def _check(cfg: Config) -> Config:
    # each key alone, as its field declares
    for key, meta in META.items():
        value = getattr(cfg, key)
        if meta["choices"] and value not in meta["choices"]:
            raise GanError(f"config key '{key}': {value!r} is not one of {meta['choices']}")
        if meta["subset"]:
            ops = [p for p in value.replace(" ", "").split(",") if p]
            if set(ops) - set(meta["subset"]) or len(ops) != len(set(ops)):
                allowed = ",".join(meta["subset"])
                raise GanError(
                    f"config key '{key}': {value!r}; use a comma-separated subset of "
                    f"{', '.join(meta['subset'])} (e.g. {key}={allowed}) or '' for off"
                )
        why = meta["range"] and _outside(meta["range"], value)
        if why:
            raise GanError(f"config key '{key}': {why}, got {value}")
    # keys together
    if cfg.lr_decay < 1.0 and cfg.lr_end < 1.0:
        raise GanError(
            f"config keys 'lr_decay' ({cfg.lr_decay}) and 'lr_end' ({cfg.lr_end}) both decay "
            "the learning rates; keep lr_end (the decay over the whole run) and set lr_decay=1.0"
        )
    if cfg.ada_target > 0 and not cfg.diffaug.strip(", "):
        raise GanError(
            f"config key 'ada_target': {cfg.ada_target} adapts how often the diffaug ops apply, "
            "and diffaug is off; set diffaug (e.g. diffaug=color,translation,cutout) or "
            "ada_target=0"
        )
    if cfg.balanced and not cfg.limit:
        raise GanError("config key 'balanced': draws a subset of `limit` images; set limit=N")
    if cfg.dataset in ("folder", "zip") and not cfg.data_path:
        raise GanError(f"config key 'data_path': dataset '{cfg.dataset}' needs data_path=PATH")
    if cfg.dataset == "fake" and (cfg.metric == "fid" or cfg.kid):
        # a FID (or KID) of noise against noise would be reported as a real, even standard, one
        key = "metric" if cfg.metric == "fid" else "kid"
        raise GanError(
            f"config key '{key}': dataset 'fake' is seeded noise, with no real images to "
            "compare an Inception FID or KID with; set metric=fd_domain (the in-domain "
            "distance, never a standard number) and kid=false"
        )
    return cfg


def make_config(values: dict | None = None, base: Config | None = None) -> Config:
    """A checked Config from raw values over `base` (defaults); unknown keys raise GanError."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise GanError(
            f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}"
        )
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return _check(dataclasses.replace(base or Config(), **coerced))


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ['lr_g=1e-4', 'classes=0,2'] into a dict of raw values (YAML-typed)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GanError(f"--set {pair!r}: expected key=value, e.g. --set lr_g=1.0e-4")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        out[key.strip()] = raw if isinstance(value, (dict, type(None))) else value
    return out


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping of config values, naming the file on any error."""
    path = Path(path)
    if not path.is_file():
        raise GanError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise GanError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise GanError(f"config file {path} must hold a mapping of key: value")
    return data


def presets() -> list[str]:
    """Names of the presets shipped in gan/presets/."""
    files = resources.files("gan").joinpath("presets").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".yaml"))


def preset_values(name: str) -> dict:
    """Raw values of a shipped preset."""
    if name not in presets():
        raise GanError(f"unknown preset {name!r}; choose one of: {', '.join(presets())}")
    text = resources.files("gan").joinpath("presets", f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def load_config(
    path: str | Path | None = None, preset: str | None = None, overrides: list[str] = ()
) -> Config:
    """Config from a preset or YAML file (or defaults), then `key=value` overrides."""
    values = {}
    if preset:
        values.update(preset_values(preset))
    if path:
        values.update(read_yaml(path))
    values.update(parse_overrides(list(overrides)))
    return make_config(values)


def to_dict(cfg: Config) -> dict:
    """Plain dict of the config (lists for tuples), for YAML, JSON and checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


if __name__ == "__main__":  # the page's generator moved: the old command names the new one
    import sys

    print("docs/config.md is written by: python -m gan.config_docs docs/config.md", file=sys.stderr)
    raise SystemExit(2)
