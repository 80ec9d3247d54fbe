"""Checkpoints: plain dicts of state_dicts and data, written atomically, loaded weights-only."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from gan.config import Config, GanError, make_config
from gan.io import atomic_save, copy_atomic, write_error  # noqa: F401  (ck.copy_atomic, ...)

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"ckpt_(\d{6})\.pt$")


def resolve_device(name: str, cli: bool = False) -> torch.device:
    """'auto' picks CUDA when present; CUDA without one, or a bad name, is a clear error naming
    the config key, or the --device option of a command (cli=True)."""
    subject = f"--device {name!r}" if cli else f"config key 'device' = {name!r}"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        fix = "--device cpu" if cli else "device=cpu"
        raise GanError(f"{subject}: no CUDA GPU is visible; use {fix}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GanError(f"{subject}: use cpu, cuda, cuda:N or auto") from None


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
    """Load a checkpoint with weights_only=True; GanError naming the file if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise GanError(f"checkpoint {path} does not exist; pass a run directory or a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncation and tampering raise many error types)
        raise GanError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
            "use an earlier checkpoint or retrain"
        ) from None
    if not isinstance(state, dict) or "G" not in state or "config" not in state:
        raise GanError(f"checkpoint {path} is not a gan checkpoint (no G or config)")
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


def latest_good(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest readable checkpoint; a truncated newer one is skipped with a warning."""
    for p in reversed(numbered(run_dir)):
        try:
            return p, load_checkpoint(p)
        except GanError as e:
            log.warning("%s; falling back to the checkpoint before it", e)
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
    from gan.models import build_models

    state = load_checkpoint(find_checkpoint(target), map_location=device)
    cfg = config_of(state)
    G, _ = build_models(cfg, state.get("num_classes", 0))
    weights = state["G_ema"] if ema and state.get("G_ema") is not None else state["G"]
    G.load_state_dict(weights)
    return G.to(device).eval(), cfg, state
