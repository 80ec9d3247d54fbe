"""What rows and the report share: the machine a run measured on, curves trained side by side in
worker processes, process CPU seconds, `--set L:KEY=VALUE` values, a recipe's folder name, and
log-linear interpolation along a curve."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import resource
import socket
import time
from pathlib import Path


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (the DataLoader's workers)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def parse_sets(items: list[str]) -> dict[str, list[str]]:
    """['rn:width=16', 'rn:batch_size=32'] -> {'rn': ['width=16', 'batch_size=32']}."""
    extra: dict[str, list[str]] = {}
    for item in items:
        label, kv = item.split(":", 1)
        extra.setdefault(label, []).append(kv)
    return extra


def recipe_key(cfg) -> str:
    """A recipe's folder name: a hash of the config values that differ from the defaults, less
    name and epochs (which a resume may change). A changed recipe trains anew; a renamed or
    extended one, or one whose config gained a key at its default, goes on."""
    from gan.config import Config, to_dict

    default = to_dict(Config())
    values = {
        k: v for k, v in to_dict(cfg).items() if k not in ("name", "epochs") and v != default[k]
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]


def side_by_side(fn, tasks: list, jobs: int) -> list:
    """fn over tasks, in order: `jobs` at a time in spawned worker processes, or in this process
    when jobs <= 1. Not a multiprocessing.Pool: its daemonic workers may not start processes of
    their own (the textbook loop's DataLoader workers)."""
    if jobs <= 1:
        return list(map(fn, tasks))
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, tasks))


def interp_log(xs: list[float], ys: list[float], x: float) -> float | None:
    """log-linear interpolation of y at x on a rising xs; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    import numpy as np

    return math.exp(float(np.interp(x, xs, np.log(ys))))
