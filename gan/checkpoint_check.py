"""The door of every checkpoint read from disk: its keys and their types, its config, and the
shape of each tensor against the models that config builds. A file that fails is one GanError
naming the file, what is wrong and the fix, before any of it reaches a model or an optimiser."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from gan.config import Config, GanError, make_config
from gan.models import build_models

FIX = "use another checkpoint of the run (its best.pt or an earlier ckpt_*.pt), or retrain"
# what TrainState.state_dict writes; every checkpoint since the first has these
REQUIRED = ("G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "epoch", "step", "config", "rng")
# checked when present: G_ema is None without an EMA, d_state came with ADA and LeCam, and
# TrainState.load_state_dict and the samplers read the others with defaults
OPTIONAL = ("G_ema", "best_metric", "num_classes", "class_names", "d_state")


class CheckpointError(GanError):
    """A checkpoint file that cannot be used: `problem` says why (one line at the CLI)."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"checkpoint {path} {problem}; {FIX}")


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_checkpoint(state: object, path: str | Path) -> Config:
    """The Config of a loaded checkpoint once all of it is checked; CheckpointError otherwise."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(path, problem)

    if not isinstance(state, dict):
        raise bad(f"holds a {_kind(state)}, not a gan checkpoint (a dict of G, D, config, ...)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise bad(f"is not a complete gan checkpoint: key(s) {', '.join(missing)} missing")
    cfg = _config(state["config"], bad)
    for key in ("epoch", "step"):
        if not _is_int(state[key]) or state[key] < 0:
            raise bad(f"has {key} = {state[key]!r} ({_kind(state[key])}), not a whole number >= 0")
    best = state.get("best_metric", math.inf)
    if not _is_number(best):
        raise bad(f"has best_metric = {best!r} ({_kind(best)}), not a number")
    num_classes = state.get("num_classes", 0)
    if not _is_int(num_classes) or num_classes < 0:
        raise bad(f"has num_classes = {num_classes!r} ({_kind(num_classes)}), not a count")
    names = state.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad(f"has class_names of type {_kind(names)}, not a list of names")
    d_state = state.get("d_state")  # None: written before ADA and LeCam, as a missing key
    if d_state is not None and not (
        isinstance(d_state, dict) and all(_is_number(v) for v in d_state.values())
    ):
        raise bad(f"has a d_state of type {_kind(d_state)}, not a mapping of numbers")
    _rng(state["rng"], bad)
    try:
        G, D = _built(cfg, num_classes)
    except GanError as e:
        raise bad(f"cannot build its models ({e})") from None
    where = f"(arch {cfg.arch}, width {cfg.width}, image_size {cfg.image_size})"
    _weights("G", state["G"], G.weights, where, bad)
    _weights("D", state["D"], D.weights, where, bad)
    if state.get("G_ema") is not None:
        _weights("G_ema", state["G_ema"], G.weights, where, bad)
    _optimizer("opt_g", state["opt_g"], G.params, bad)
    _optimizer("opt_d", state["opt_d"], D.params, bad)
    _scheduler("sched_g", state["sched_g"], bad)
    _scheduler("sched_d", state["sched_d"], bad)
    return cfg


class Built(NamedTuple):
    """What a checkpoint's tensors are checked against: a model's state_dict names with their
    shapes and dtypes, and its parameters' shapes in order."""

    weights: dict[str, tuple[torch.Size, torch.dtype]]
    params: list[torch.Size]


@functools.lru_cache(maxsize=8)
def _built(cfg: Config, num_classes: int) -> tuple[Built, Built]:
    """(G, D) as cfg builds them, built once per config (every checkpoint of a run shares one,
    and a build costs ~1 s: on the meta device every initialiser runs through Python
    decompositions). On the meta device, never in memory: the config comes from the file, and
    a width of a million must be refused by the shape check, not allocated. The caller's RNG
    stays as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        models = build_models(cfg, num_classes)
    return tuple(
        Built(
            {k: (v.shape, v.dtype) for k, v in m.state_dict().items()},
            [p.shape for p in m.parameters()],
        )
        for m in models
    )


def _config(values: object, bad) -> Config:
    if not isinstance(values, Mapping):
        raise bad(f"has a config of type {_kind(values)}, not a mapping of config keys")
    try:
        return make_config(dict(values))
    except GanError as e:
        raise bad(f"has an invalid config: {e}") from None


def _rng(rng: object, bad) -> None:
    size = torch.get_rng_state().numel()
    cpu = rng.get("cpu") if isinstance(rng, dict) else None
    if not (isinstance(cpu, torch.Tensor) and cpu.dtype == torch.uint8 and cpu.shape == (size,)):
        raise bad(f"has no usable CPU RNG state (rng['cpu'] must be a uint8 tensor of {size})")
    cuda = rng.get("cuda")
    if cuda is not None and not (isinstance(cuda, torch.Tensor) and cuda.dtype == torch.uint8):
        raise bad(f"has a CUDA RNG state of type {_kind(cuda)}, not a uint8 tensor")


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _weights(part: str, weights: object, expected: dict, where: str, bad) -> None:
    """weights must be a state_dict of the expected names, shapes and dtypes."""
    if not isinstance(weights, dict):
        raise bad(f"has {part} of type {_kind(weights)}, not a state dict of tensors")
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing or extra:
        said = [f"{len(missing)} missing (e.g. {missing[0]!r})"] if missing else []
        said += [f"{len(extra)} unexpected (e.g. {extra[0]!r})"] if extra else []
        raise bad(f"has {part} weights that do not fit its config {where}: {', '.join(said)}")
    for key, (shape, dtype) in expected.items():
        got = weights[key]
        if not isinstance(got, torch.Tensor):
            raise bad(f"has {part} weight {key!r} of type {_kind(got)}, not a tensor")
        if got.shape != shape or got.dtype != dtype:
            raise bad(
                f"has {part} weight {key!r} of shape {_shape(got)} {got.dtype}, not the "
                f"{list(shape)} {dtype} its config {where} builds"
            )


def _optimizer(name: str, saved: object, params: list[torch.Size], bad) -> None:
    """An Adam state_dict over a model's parameters (their shapes, in order): its moments
    shaped like them."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    moments = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(moments, dict):
        raise bad(f"has {name} of type {_kind(saved)}, not an optimizer state dict")
    ids = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise bad(f"has a {name} parameter group that is not a dict with a params list")
        betas = group.get("betas")
        if not _is_number(group.get("lr")) or not (
            isinstance(betas, (tuple, list)) and len(betas) == 2 and all(map(_is_number, betas))
        ):
            raise bad(f"has a {name} parameter group without a numeric lr and two betas")
        ids += group["params"]
    if ids != list(range(len(params))):
        raise bad(f"has {name} over {len(ids)} parameters, not the {len(params)} of its model")
    for i, moment in moments.items():
        if not (_is_int(i) and 0 <= i < len(params) and isinstance(moment, dict)):
            raise bad(f"has a {name} state entry {i!r} that names no parameter of its model")
        for key, value in moment.items():
            if key == "step":
                continue
            if not isinstance(value, torch.Tensor) or value.shape != params[i]:
                got = _shape(value) if isinstance(value, torch.Tensor) else _kind(value)
                raise bad(
                    f"has {name} state {key!r} of parameter {i} with shape {got}, "
                    f"not {list(params[i])}"
                )


def _scheduler(name: str, saved: object, bad) -> None:
    """An ExponentialLR state_dict: the numbers its step() and get_last_lr() use."""
    if not isinstance(saved, dict):
        raise bad(f"has {name} of type {_kind(saved)}, not a scheduler state dict")
    lrs = saved.get("base_lrs")
    if not isinstance(lrs, list) or not all(_is_number(x) for x in lrs):
        raise bad(f"has {name} base_lrs of type {_kind(lrs)}, not a list of learning rates")
    if not _is_int(saved.get("last_epoch")) or not _is_number(saved.get("gamma")):
        raise bad(f"has {name} without a whole last_epoch and a numeric gamma")
    last = saved.get("_last_lr", [])
    if not isinstance(last, list) or not all(_is_number(x) for x in last):
        raise bad(f"has {name} _last_lr of type {_kind(last)}, not a list of learning rates")
