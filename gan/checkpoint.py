"""Checkpoints: the TrainState of a run as a plain dict of state_dicts and data, written
atomically, loaded weights-only; finding a run's checkpoints and its generator."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from gan.checkpoint_check import CheckpointError, check_checkpoint
from gan.config import RETUNABLE, Config, GanError, lr_gamma, make_config, to_dict, uses_ema
from gan.io import PARTIAL_GLOB, atomic_save, copy_atomic, write_error  # noqa: F401  (ck.copy_atomic, ...)
from gan.models import build_models
from gan.steps import DState

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"ckpt_(\d{6})\.pt$")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write a checkpoint atomically (atomic_save); the previous ones stay on any error."""
    path = Path(path)
    try:
        return atomic_save(state, path, "checkpoint")
    except GanError as e:
        kept = sorted(p.name for p in path.parent.glob("ckpt_*.pt") if CKPT_RE.search(p.name))
        tail = (
            f"; {kept[-1]} is kept: rerun the same command to resume from it"
            if kept
            else "; no checkpoint was written yet"
        )
        raise GanError(f"{e}{tail}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True and check all of it (check_checkpoint);
    CheckpointError (a GanError) naming the file if it is unreadable or does not fit."""
    path = Path(path)
    if not path.is_file():
        raise GanError(f"checkpoint {path} does not exist; pass a run directory or a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncation and tampering raise many error types)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""  # one line at the CLI
        raise CheckpointError(path, f"is unreadable ({type(e).__name__}: {first})") from None
    check_checkpoint(state, path)
    return state


def numbered(run_dir: str | Path) -> list[Path]:
    """The run's numbered checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    return (
        sorted(p for p in folder.glob("ckpt_*.pt") if CKPT_RE.search(p.name))
        if folder.is_dir()
        else []
    )


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """Where the checkpoint of `epoch` goes."""
    return Path(run_dir) / "checkpoints" / f"ckpt_{epoch:06d}.pt"


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` numbered checkpoints."""
    for p in numbered(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


def remove_partial_writes(run_dir: str | Path) -> list[Path]:
    """Delete the temp files (.NAME.tmpPID) of checkpoint writes that a killed process left
    behind: a run directory has one trainer, so at its start none is still being written."""
    found = sorted((Path(run_dir) / "checkpoints").glob(PARTIAL_GLOB))
    for p in found:
        p.unlink(missing_ok=True)
    return found


def latest_good(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest usable checkpoint of a run (None when it has none yet); each newer one that is
    truncated or does not fit is skipped with a warning. A run whose checkpoints are all unusable
    is a GanError: starting over in its directory would silently replace it."""
    skipped: list[CheckpointError] = []
    for p in reversed(numbered(run_dir)):
        try:
            state = load_checkpoint(p)
        except CheckpointError as e:
            skipped.append(e)
            continue
        for e in skipped:
            log.warning("checkpoint %s %s; falling back to %s", e.path, e.problem, p.name)
        return p, state
    if skipped:
        e, older = skipped[0], len(skipped) - 1
        also = f" (and {older} older one(s) are unusable too)" if older else ""
        raise GanError(
            f"run directory {run_dir} has no usable checkpoint to resume from: checkpoint "
            f"{e.path} {e.problem}{also}; pass a new --out to start a new run, or put a good "
            "checkpoint back"
        )
    return None


def find_checkpoint(target: str | Path, prefer_best: bool = True) -> Path:
    """A .pt file as given, or a run dir's best.pt (else its newest checkpoint)."""
    target = Path(target)
    if target.is_file():
        return target
    if not target.is_dir():
        raise GanError(f"{target} is neither a checkpoint file nor a run directory")
    best = target / "checkpoints" / "best.pt"
    if prefer_best and best.is_file():
        return best
    found = numbered(target)
    if not found:
        raise GanError(f"{target} holds no checkpoints/ckpt_*.pt; train first with `gan train`")
    return found[-1]


def config_of(state: dict) -> Config:
    """The Config stored in a checkpoint."""
    return make_config(state["config"])


def load_generator(target: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """(G in eval mode, its Config, the raw checkpoint) from a run dir or a .pt file."""
    state = load_checkpoint(find_checkpoint(target), map_location=device)
    cfg = config_of(state)
    G, _ = build_models(cfg, state.get("num_classes", 0))
    weights = state["G_ema"] if ema and state.get("G_ema") is not None else state["G"]
    G.load_state_dict(weights)
    return G.to(device).eval(), cfg, state


# -- what a run saves and restores ---------------------------------------------------------------


@dataclass
class TrainState:
    """Everything a run saves and restores (G, D, G_ema, optimisers, schedulers, epoch, step,
    best metric, RNG): one state_dict / load_state_dict pair, so save and restore cannot drift."""

    cfg: Config
    device: torch.device
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    num_classes: int = 0  # the dataset's classes, saved for a conditional G (0 otherwise)
    class_names: list[str] = field(default_factory=list)
    epoch: int = 0
    step: int = 0  # G updates so far (the EMA ramp counts them)
    best: float = math.inf  # the best value of cfg.metric so far
    d_state: DState = field(default_factory=DState)  # ADA's probability, LeCam's anchors

    @classmethod
    def build(
        cls, cfg: Config, num_classes: int, class_names: list[str], device: torch.device
    ) -> TrainState:
        """Fresh G, D, G_ema, Adam optimisers and LR schedules for cfg, on `device`."""
        G, D = build_models(cfg, num_classes)
        G, D = G.to(device), D.to(device)
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        G_ema = copy.deepcopy(G).eval().requires_grad_(False) if uses_ema(cfg) else None
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        # stepped once an epoch: lr_decay, or lr_end spread over the run (gan.config.lr_gamma)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=lr_gamma(cfg))
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=lr_gamma(cfg))
        return cls(
            cfg,
            device,
            G,
            D,
            G_ema,
            opt_g,
            opt_d,
            sched_g,
            sched_d,
            num_classes=num_classes if cfg.conditional else 0,
            class_names=list(class_names),
        )

    def state_dict(self) -> dict:
        """The checkpoint: a plain dict of state_dicts and data (weights_only-loadable)."""
        cuda = self.device.type == "cuda"
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best,
            "d_state": dataclasses.asdict(self.d_state),
            "config": to_dict(self.cfg),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "rng": {
                "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict saved, the global RNG included, for an exact resume."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None and state.get("G_ema") is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best = state.get("best_metric", math.inf)
        saved = state.get("d_state") or {}  # older checkpoints have none
        known = {f.name for f in dataclasses.fields(DState)}
        self.d_state = DState(**{k: float(v) for k, v in saved.items() if k in known})
        torch.set_rng_state(state["rng"]["cpu"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def retune(self, saved: Config) -> dict:
        """Apply this state's config to the optimisers after load_state_dict (which restored the
        saved learning rates, betas and decay): each RETUNABLE key that differs from the saved
        config takes its new value from this epoch on, the LR decay's progress kept; under
        lr_end, a new run length respreads the decay over it (the learning rate becomes what the
        new length has at this epoch). Returns {key: [saved, new]} of the keys that changed."""
        old, new = to_dict(saved), to_dict(self.cfg)
        changed = {k: [old[k], new[k]] for k in RETUNABLE if old[k] != new[k]}
        if self.cfg.lr_end < 1.0 and old["epochs"] != new["epochs"]:
            changed["epochs"] = [old["epochs"], new["epochs"]]
        if not changed:
            return {}  # as saved, bit for bit (the exact-resume tests hold it to that)
        gamma = lr_gamma(self.cfg)
        for opt, sched, lr in (
            (self.opt_g, self.sched_g, self.cfg.lr_g),
            (self.opt_d, self.sched_d, self.cfg.lr_d),
        ):
            sched.base_lrs = [lr for _ in opt.param_groups]
            sched.gamma = gamma
            for group in opt.param_groups:
                group["lr"] = lr * gamma**self.epoch  # ExponentialLR's closed form
                group["betas"] = (self.cfg.beta1, self.cfg.beta2)
            sched._last_lr = [g["lr"] for g in opt.param_groups]
        return changed
