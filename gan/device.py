"""The torch device of a config's `device` or a command's --device, checked."""

from __future__ import annotations

import torch

from gan.config import GanError


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
