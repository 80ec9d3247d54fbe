"""The first impression: `make tune-quick` as shipped against the quick config it replaced.

Both tune configs run through the same tune job on this machine, one after the other, each in
its own fresh storage folder. For each: the wall seconds of the tune, the trial-epochs it spent,
and its winner's best checkpoint scored on the quality bench's protocol (fd_domain of 10k
generated images against the 10k test images, with the rarest class's share), so that the two
winners compare like with like and not by the 1000-image score each tune ranked with.

    python -m bench quick
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench import ROOT
from gan.config import make_config
from jobs.tune_spec import load_spec

CONFIGS = {
    "before": ROOT / "bench" / "quick-before.yaml",
    "now": ROOT / "tune_configs" / "quick.yaml",
}
SCORES = ("fd_domain", "class_coverage_min", "class_entropy")


def score(best_pt: Path, base: dict) -> dict:
    """fd_domain and class coverage of a checkpoint's sampling G, 10k samples vs the test split."""
    from bench.rows.quality import PROTOCOL
    from gan.checkpoint import load_generator
    from gan.config import parse_overrides
    from gan.metrics import make_evaluator

    G, _, _ = load_generator(best_pt)
    protocol = {**parse_overrides(list(PROTOCOL)), "limit": 0}  # the quality bench's protocol
    m = make_evaluator(make_config({**base, **protocol}), "cpu").evaluate(G)
    return {k: m[k] for k in SCORES}


def bench_quick(storage: Path | None = None, configs: dict = CONFIGS) -> dict:
    """Wall seconds, trial-epochs and the 10k-scored winner of each quick config."""
    from gan.metrics import make_evaluator
    from jobs.tune import run_tune

    storage = Path(storage or tempfile.mkdtemp(prefix="bench-quick-"))
    out: dict = {"protocol": "winner's best.pt: fd_domain, 10k generated vs the 10k test images"}
    for label, path in configs.items():
        spec = load_spec(path)
        # the data and classifier caches are paid before the clock starts, for both configs
        make_evaluator(make_config(spec.base), "cpu")
        t0 = time.time()
        rows = run_tune(str(path), storage=str(storage / label))
        wall = time.time() - t0
        best = rows[0]
        images = spec.base.get("limit", 0)
        out[label] = {
            "config": str(Path(path).resolve().relative_to(ROOT)),
            "trials": len(rows),
            "trial_epochs": sum(r["epochs"] for r in rows),
            "images_per_epoch": images,
            "wall_s": round(wall, 1),
            "winner": {k: best[k] for k in ("trial", spec.metric, "best_epoch", *spec.search)},
            "winner_10k": score(Path(best["_result"].path) / "checkpoints" / "best.pt", spec.base),
        }
        print(f"quick {label}: {json.dumps(out[label], default=str)}", flush=True)
    if {"before", "now"} <= out.keys():
        b, n = out["before"], out["now"]
        out["fd_domain_ratio"] = n["winner_10k"]["fd_domain"] / b["winner_10k"]["fd_domain"]
        out["wall_ratio"] = n["wall_s"] / b["wall_s"]
    return out


def run(args) -> dict:
    """Today's tune_configs/quick.yaml against bench/quick-before.yaml (the same in --quick)."""
    out = bench_quick()
    print(f"quick: fd_domain x{out['fd_domain_ratio']:.2f}", flush=True)
    return out
