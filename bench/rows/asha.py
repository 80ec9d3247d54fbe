"""ASHA against running every trial to max_t, on one tune config (default: the quick one).

`bench_asha("tune_configs/quick.yaml")` runs the same sampled configurations twice (the search
is seeded) and returns the trial-epochs each spent, the best metric each found, and wall times.
`python -m bench asha`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import yaml

from bench import ROOT
from gan.config import make_config, read_yaml
from jobs.tune_spec import load_spec


def bench_asha(config_path: str | Path, storage: str | Path | None = None) -> dict:
    """Trial-epochs used and best metric found by ASHA vs. every trial run to max_t."""
    from gan.metrics import make_evaluator
    from jobs.tune import run_tune

    spec = load_spec(config_path)
    make_evaluator(make_config(spec.base), "cpu")  # data and metric caches: neither run pays them
    raw = read_yaml(config_path)
    work = Path(storage or tempfile.mkdtemp(prefix="bench-asha-"))
    work.mkdir(parents=True, exist_ok=True)
    max_t = spec.scheduler["max_t"]
    variants = {
        "asha": {**raw, "scheduler": {**spec.scheduler, "type": "asha"}},
        "full": {**raw, "scheduler": {"type": "fifo"}, "base": {**raw["base"], "epochs": max_t}},
    }
    out = {"config": str(config_path), "metric": spec.metric, "mode": spec.mode, "max_t": max_t}
    for label, data in variants.items():
        path = work / f"{spec.name}-{label}.yaml"
        path.write_text(yaml.safe_dump({**data, "name": f"{spec.name}-bench-{label}"}))
        t0 = time.time()
        rows = run_tune(str(path), storage=str(work / "results"))
        out[label] = {
            "trials": len(rows),
            "trial_epochs": sum(r["epochs"] for r in rows),
            "best_metric": rows[0][spec.metric],
            "best_trial": {k: rows[0][k] for k in spec.search},
            "stopped_early": sum(r["status"] == "stopped" for r in rows),
            "wall_s": round(time.time() - t0, 1),
        }
    out["epochs_saved"] = 1 - out["asha"]["trial_epochs"] / max(out["full"]["trial_epochs"], 1)
    out["results"] = str(work / "results")
    return out


def run(args) -> dict:
    """tune_configs/quick.yaml, with and without ASHA (the same in --quick)."""
    out = bench_asha(ROOT / "tune_configs" / "quick.yaml")
    print(f"asha: {json.dumps(out)}", flush=True)
    return out
