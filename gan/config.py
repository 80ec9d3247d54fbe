"""One flat, frozen config: its field names are the YAML keys, the `--set` keys and Ray's keys."""

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


@dataclass(frozen=True)
class Config:
    name: str = "fmnist"  # run / experiment name; the run directory is <out>/<name> by default
    # -- data ---------------------------------------------------------------------------------
    dataset: str = "fashion_mnist"  # fashion_mnist | mnist | cifar10 | folder | zip
    data_path: str = ""  # image folder or ZIP archive (folder / zip datasets)
    data_dir: str = "data"  # where torchvision downloads and prepared tensors are cached
    classes: tuple[int, ...] = ()  # keep only these labels, relabelled 0..k-1 (empty: all)
    channels: int = 1  # 1 (grayscale) or 3 (RGB); images are converted to this
    image_size: int = 28  # square side in pixels; any size (28, 32, 64, 100, ...)
    limit: int = 0  # use only the first N training images (0: all)
    balanced: bool = False  # limit draws a fixed random, class-balanced N instead of the first N
    holdout: float = 0.1  # held-out fraction for folder/zip (torchvision sets use their test split)
    hflip: bool = False  # augmentation of real images: random horizontal flip
    rotate: float = 0.0  # augmentation: random rotation in [-rotate, rotate] degrees
    zoom: float = 0.0  # augmentation: random zoom in [1 - zoom, 1 + zoom]
    # ZIP bombs: a member's or the archive's unpacked size is checked against these from its
    # header, then again while it is read in chunks (headers can lie)
    zip_member_max_bytes: int = 1 << 27  # most bytes one ZIP member may unpack to (128 MiB)
    zip_max_bytes: int = 1 << 34  # most bytes all of a ZIP's image members may unpack to (16 GiB)
    # -- model --------------------------------------------------------------------------------
    arch: str = "dcgan"  # a key of gan.models.ARCHS: baseline | modified | dcgan | resnet
    latent_dim: int = 100  # size of z
    width: int = 64  # channel width of the narrowest conv stage; wider stages are multiples
    upsample: str = "default"  # default (the arch's own) | transposed | nearest | pixelshuffle
    spectral_norm: bool = False  # spectral normalization on every D layer
    d_noise: float = 0.0  # std of Gaussian noise added to D's input while training D
    d_dropout: float = 0.0  # dropout after each D conv stage (dcgan uses 0.3 in its presets)
    conditional: bool = False  # class-conditional G (label embedding) and D (projection)
    # -- optimisation -------------------------------------------------------------------------
    epochs: int = 20  # passes over the training set
    batch_size: int = 64  # images per step
    lr_g: float = 2.0e-4  # Adam learning rate of G
    lr_d: float = 2.0e-4  # Adam learning rate of D
    beta1: float = 0.5  # Adam beta1 (0.5 is the DCGAN choice)
    beta2: float = 0.999  # Adam beta2
    # the learning rates decay exponentially over the whole run to lr_end x lr_g / lr_d, the
    # same shape at 10 or 1000 epochs (1.0: constant)
    lr_end: float = 1.0
    # the older per-epoch form (1.0: off), kept so that old configs and checkpoints resume as
    # before; over 1000 epochs 0.85 ends at 1e-71 x: a longer run wants lr_end
    lr_decay: float = 1.0
    loss: str = "bce"  # bce (non-saturating) | hinge
    label_smoothing: float = 0.0  # D's real target is 1 - label_smoothing (bce only)
    label_noise: float = 0.0  # chance of flipping each of D's real/fake targets (bce only)
    d_steps: int = 1  # D updates per G update
    ema_decay: float = 0.999  # EMA of G's weights for sampling and evaluation (0: off)
    # EMA warm-up (StyleGAN2-ADA's ema_rampup): the EMA's half-life, in images, is at most this
    # fraction of the images seen so far, so G_ema tracks G early on (0: the fixed ramp
    # min(ema_decay, (1 + step) / (10 + step)) of older runs)
    ema_rampup: float = 0.0
    # the EMA's half-life as a fraction of the run's G steps, the same share of a 10- or a
    # 1000-epoch run, in place of ema_decay's fixed half-life (0: ema_decay's)
    ema_horizon: float = 0.0
    # -- techniques of the strongest recipes (all off by default) ----------------------------
    diffaug: str = ""  # DiffAugment on all D sees: comma-separated color,translation,cutout
    r1_gamma: float = 0.0  # R1 penalty (gamma / 2) E|grad_x D(x)|^2 on real images (0: off)
    r1_every: int = 16  # lazy R1 (StyleGAN2): every N D steps, weighted by N
    # adaptive augmentation (ADA's r_t heuristic): each diffaug op reaches an image with a
    # probability p, raised while the share of real images D calls real (E[sign D(x)]) is above
    # this target (ADA: 0.6) and lowered below it, from 0 (0: every op reaches every image)
    ada_target: float = 0.0
    lecam: float = 0.0  # LeCam regularisation of D, its weight (Tseng et al. 2021: 0.3; 0: off)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile G and D, falling back to eager if it fails
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # same seed + config on CPU gives the same losses
    # -- logging, checkpoints, evaluation -----------------------------------------------------
    sample_every: int = 1  # epochs between sample grids (0: only at the end)
    checkpoint_every: int = 1  # epochs between checkpoints (0: only at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk (the best one is kept apart)
    eval_every: int = 0  # epochs between evaluations (0: only at the end; -1: never)
    metric: str = "fid"  # fid | fd_domain: the number reported to the tuner and kept best
    fid_samples: int = 5000  # generated images per evaluation (compare FIDs at equal N only)
    fid_ref_split: str = "test"  # real statistics from the train or test split
    fid_weights: str = ""  # local Inception weights file (default: $GAN_FID_WEIGHTS or standard)
    # torch.compile Inception with its weights frozen: faster FID evaluations after a one-off
    # compile (README, Benchmarks: the FID row), falling back to eager if it fails
    fid_compile: bool = False
    kid: bool = False  # also compute KID at each evaluation
    prc: bool = False  # also compute precision/recall (needs VGG16 weights)


FIELDS = {f.name: f for f in fields(Config)}
# keys a run may resume under new values and go on from its checkpoint (optimiser moments kept):
# what a Population Based Training exploit mutates, or a user lowers for the rest of a run
RETUNABLE = ("lr_g", "lr_d", "beta1", "beta2", "r1_gamma", "label_smoothing", "label_noise")
DIFFAUG = ("color", "translation", "cutout")  # gan.diffaug.OPS, named here without torch
ARCH_NAMES = ("baseline", "modified", "dcgan", "resnet")  # gan.models.ARCHS, without torch
_HINTS = typing.get_type_hints(Config)
CHOICES = {
    "dataset": ("fashion_mnist", "mnist", "cifar10", "folder", "zip"),
    "upsample": ("default", "transposed", "nearest", "pixelshuffle"),
    "loss": ("bce", "hinge"),
    "metric": ("fid", "fd_domain"),
    "fid_ref_split": ("train", "test"),
    "arch": ARCH_NAMES,
}

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


def _check(cfg: Config) -> Config:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise GanError(f"config key '{key}': {getattr(cfg, key)!r} is not one of {allowed}")
    positive = ("image_size", "latent_dim", "width", "epochs", "batch_size", "d_steps", "r1_every")
    positive += ("zip_member_max_bytes", "zip_max_bytes")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise GanError(f"config key '{key}': must be at least 1, got {getattr(cfg, key)}")
    if cfg.channels not in (1, 3):
        raise GanError(f"config key 'channels': must be 1 or 3, got {cfg.channels}")
    if cfg.image_size < 8:
        raise GanError(f"config key 'image_size': must be at least 8, got {cfg.image_size}")
    for key in ("lr_g", "lr_d"):
        if not getattr(cfg, key) > 0:
            raise GanError(f"config key '{key}': must be positive, got {getattr(cfg, key)}")
    unit = ("beta1", "beta2", "label_smoothing", "label_noise", "ema_decay", "zoom", "d_dropout")
    unit += ("ada_target",)
    for key in unit:
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise GanError(f"config key '{key}': must be in [0, 1), got {getattr(cfg, key)}")
    if not 0.0 <= cfg.holdout < 0.9:
        raise GanError(f"config key 'holdout': must be in [0, 0.9), got {cfg.holdout}")
    for key in ("lr_decay", "lr_end"):
        if not 0.0 < getattr(cfg, key) <= 1.0:
            raise GanError(f"config key '{key}': must be in (0, 1], got {getattr(cfg, key)}")
    if cfg.lr_decay < 1.0 and cfg.lr_end < 1.0:
        raise GanError(
            f"config keys 'lr_decay' ({cfg.lr_decay}) and 'lr_end' ({cfg.lr_end}) both decay "
            "the learning rates; keep lr_end (the decay over the whole run) and set lr_decay=1.0"
        )
    policy = [p for p in cfg.diffaug.replace(" ", "").split(",") if p]
    bad = sorted(set(policy) - set(DIFFAUG))
    if bad or len(policy) != len(set(policy)):
        raise GanError(
            f"config key 'diffaug': {cfg.diffaug!r}; use a comma-separated subset of "
            f"{', '.join(DIFFAUG)} (e.g. diffaug=color,translation,cutout) or '' for off"
        )
    for key in ("ema_rampup", "ema_horizon"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise GanError(f"config key '{key}': must be in [0, 1], got {getattr(cfg, key)}")
    if cfg.ada_target > 0 and not policy:
        raise GanError(
            f"config key 'ada_target': {cfg.ada_target} adapts how often the diffaug ops apply, "
            "and diffaug is off; set diffaug (e.g. diffaug=color,translation,cutout) or "
            "ada_target=0"
        )
    for key in ("limit", "rotate", "d_noise", "sample_every", "checkpoint_every", "r1_gamma"):
        if getattr(cfg, key) < 0:
            raise GanError(f"config key '{key}': must not be negative, got {getattr(cfg, key)}")
    if cfg.lecam < 0:
        raise GanError(f"config key 'lecam': must not be negative, got {cfg.lecam}")
    if cfg.keep_checkpoints < 1:
        raise GanError("config key 'keep_checkpoints': must be at least 1")
    if cfg.eval_every < -1:
        raise GanError("config key 'eval_every': must be -1 (never), 0 (at the end) or positive")
    if cfg.fid_samples < 2:
        raise GanError("config key 'fid_samples': FID needs at least 2 samples")
    if cfg.balanced and not cfg.limit:
        raise GanError("config key 'balanced': draws a subset of `limit` images; set limit=N")
    if cfg.dataset in ("folder", "zip") and not cfg.data_path:
        raise GanError(f"config key 'data_path': dataset '{cfg.dataset}' needs data_path=PATH")
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
