"""Tuning efficiency: random+ASHA, Optuna+ASHA and PBT against every trial run to max_t.

1. The exhaustive search, measured: every point of a 27-point grid over the quick model
   (arch x lr_g x lr_d, tune_configs/quick.yaml's base on its own 8192 images) trains to max_t
   epochs, scored after every epoch, `jobs` configs side by side (the cores shared out). CPU
   training is deterministic, so a config's curve does not depend on which search runs it or when.
2. Random search and Optuna's TPE, each under ASHA, run as real Ray Tune experiments (their own
   searcher and scheduler, `max_concurrent` trials at a time) whose trainable reports the
   measured curve of its config epoch by epoch instead of training it again. Several seeds each.
3. PBT and PB2 cannot be read off the table (an exploit changes the curve that follows), so they
   train for real: 27 trials over the same space, every trial to max_t.

For each method: trial-epochs used, the best metric found, the trial-epochs after which its best
so far came within 5% of the exhaustive best, and its best within a budget of a third of the
exhaustive trial-epochs.

    python -m bench search [--search-table table.json] [--search-population pbt,pb2] [--jobs 2]
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import ROOT
from gan.config import read_yaml

ARCHS = ["baseline", "modified", "dcgan"]
LRS = [2.0e-4, 5.0e-4, 1.0e-3]
WITHIN = 0.05


def base_config(limit: int, max_t: int, data_dir: str) -> dict:
    """quick.yaml's base, on `limit` images, to max_t epochs, scored every epoch."""
    base = dict(read_yaml(ROOT / "tune_configs" / "quick.yaml")["base"])
    base.update(limit=limit, epochs=max_t, eval_every=1, sample_every=max_t, data_dir=data_dir)
    base.update(checkpoint_every=max_t, keep_checkpoints=1, loss="bce")
    return base


def grid() -> list[dict]:
    return [{"arch": a, "lr_g": g, "lr_d": d} for a, g, d in itertools.product(ARCHS, LRS, LRS)]


def key(config: dict) -> str:
    return f"{config['arch']}|{float(config['lr_g']):.6g}|{float(config['lr_d']):.6g}"


def exhaustive(base: dict, work: Path, metric: str, jobs: int = 1) -> dict[str, list[float]]:
    """Every grid point trained to max_t, `jobs` at a time in worker processes (each on its share
    of the cores); {key: metric after each epoch}, in grid order."""
    from bench.common import side_by_side

    tasks = [(base, point, work, metric, max(1, (os.cpu_count() or 1) // jobs)) for point in grid()]
    return dict(side_by_side(curve_of, tasks, jobs))


def curve_of(task: tuple) -> tuple[str, list[float]]:
    """(key, metric after each epoch) of one grid point trained to max_t."""
    import torch

    from gan.config import make_config
    from gan.train import train

    base, point, work, metric, threads = task
    torch.set_num_threads(threads)
    run = work / "exhaustive" / key(point).replace("|", "_")
    reports = []
    train(make_config({**base, **point}), run, lambda m, c: reports.append(m[metric]))
    print(f"search  exhaustive {key(point)}: {[round(v, 2) for v in reports]}", flush=True)
    return key(point), reports


def table_trainable(table_file: Path):
    """A Ray trainable that reports its config's curve from `table_file` (the measured table),
    one epoch at a time. The path travels inside the trainable, so its workers find it whether
    or not Ray was already running when the table was written."""
    table_file = str(table_file)

    def table_trial(config, exp_dir: str = "", mode: str = "min") -> None:
        replay(config, json.loads(Path(table_file).read_text()), exp_dir)

    return table_trial


def replay(config: dict, table: dict, exp_dir: str) -> None:
    """Report `config`'s curve in `table` through Ray Tune, logging each epoch to events.jsonl."""
    from ray import tune

    curve = table[key(config)]
    events = Path(exp_dir) / "events.jsonl"
    for epoch, value in enumerate(curve[: int(config["epochs"])], 1):
        with open(events, "a") as f:  # one line per trial-epoch, in the order they happen
            f.write(json.dumps({"t": time.time(), "key": key(config), "value": value}) + "\n")
        tune.report({"epoch": epoch, config["metric"]: value})


def trace(events: Path) -> list[float]:
    """The metric of every trial-epoch, in the order they were reported."""
    rows = [json.loads(x) for x in events.read_text().splitlines()]
    return [r["value"] for r in sorted(rows, key=lambda r: r["t"])]


def summary(values: list[float], best: float, budget: int) -> dict:
    """Trial-epochs, best found, trial-epochs to come within 5% of `best` (the metric is
    minimised), and the best within the first `budget` trial-epochs."""
    so_far, reach = math.inf, None
    for i, v in enumerate(values, 1):
        so_far = min(so_far, v)
        if reach is None and so_far <= best * (1 + WITHIN):
            reach = i
    return {
        "trial_epochs": len(values),
        "best": so_far,
        "epochs_to_within_5pct": reach,
        "best_within_budget": min(values[:budget]) if values else None,
    }


def run_method(
    label: str, top: dict, base: dict, work: Path, trainable, seed: int
) -> tuple[list[float], float]:
    """One tune experiment of the method; returns its trace and wall seconds."""
    from jobs.tune import run_tune

    name = f"{label}-{seed}"
    spec = {"name": name, "metric": base["metric"], "base": base, "seed": seed, **top}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.time()
    run_tune(str(path), storage=str(work / "results"), trainable=trainable)
    return trace(work / "results" / name / "events.jsonl"), time.time() - t0


def bench_search(
    limit: int = 8192,
    max_t: int = 9,
    seeds: int = 10,
    pbt: bool = True,
    data_dir: str = str(ROOT / "data"),
    work: Path | None = None,
    table_file: str = "",
    jobs: int = 1,
    populations: tuple[str, ...] = ("pbt", "pb2"),
) -> dict:
    """The exhaustive table (trained here, or read from `table_file`, the table.json of an
    earlier run of the same settings), each method's runs over it, and PBT's own training."""
    import ray.cloudpickle

    from gan.config import make_config
    from gan.metrics import make_evaluator

    work = Path(work or tempfile.mkdtemp(prefix="bench-search-"))
    work.mkdir(parents=True, exist_ok=True)
    base = base_config(limit, max_t, data_dir)
    metric = base.get("metric", "fd_domain")
    base["metric"] = metric
    make_evaluator(make_config(base), "cpu")  # data and classifier caches, paid once
    t0 = time.time()
    table = (
        json.loads(Path(table_file).read_text())
        if table_file
        else exhaustive(base, work, metric, jobs)
    )
    exhaustive_s = time.time() - t0
    exhaustive_trace = [v for curve in table.values() for v in curve]  # grid order
    (work / "table.json").write_text(json.dumps(table))
    trainable = table_trainable(work / "table.json")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import bench/
    best = min(min(c) for c in table.values())
    budget = (len(table) * max_t) // 3
    choices = {"arch": {"choice": ARCHS}, "lr_g": {"choice": LRS}, "lr_d": {"choice": LRS}}
    asha = {"type": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": max_t}
    common = {"resources": {"cpu": 1}, "max_concurrent": 2, "num_samples": len(table)}
    # grace 1 stops at epoch 1, where a GAN's score says little of its epoch 9; grace 3 waits
    asha3 = {**asha, "grace_period": 3}
    methods = {
        "random+asha": {"searcher": "random", "search": choices, "scheduler": asha},
        "optuna+asha": {"searcher": "optuna", "search": choices, "scheduler": asha},
        "random+asha grace 3": {"searcher": "random", "search": choices, "scheduler": asha3},
        "optuna+asha grace 3": {"searcher": "optuna", "search": choices, "scheduler": asha3},
    }
    out = {
        "space": "arch {baseline, modified, dcgan} x lr_g x lr_d in {2e-4, 5e-4, 1e-3}: 27 configs",
        "model": f"tune_configs/quick.yaml base, {limit} images, bce, to max_t {max_t}",
        "metric": f"{metric}, {base['fid_samples']} samples, every epoch (min)",
        "budget_trial_epochs": budget,
        "exhaustive": {
            "trial_epochs": len(table) * max_t,
            "best": best,
            "best_config": min(table, key=lambda k: min(table[k])),
            "seconds": None if table_file else exhaustive_s,  # None: an earlier run's table
            "jobs": None if table_file else jobs,  # configs trained side by side
            "table_of": Path(table_file).name if table_file else None,
            "epochs_to_within_5pct": summary(exhaustive_trace, best, budget)[
                "epochs_to_within_5pct"
            ],
            "trace": exhaustive_trace,
            "best_within_budget": min(
                v for c in list(table.values())[: budget // max_t] for v in c
            ),
        },
        "methods": {},
    }
    for label, top in methods.items():
        runs = []
        for seed in range(seeds):
            tag = label.replace(" ", "-").replace("+", "-")
            values, wall = run_method(tag, {**common, **top}, base, work, trainable, seed)
            runs.append({"seed": seed, **summary(values, best, budget), "wall_s": round(wall)})
            print(f"search  {label} seed {seed}: {json.dumps(runs[-1])}", flush=True)
            runs[-1]["trace"] = values
        out["methods"][label] = runs
    from jobs.trial import gan_trial
    from jobs.tune import run_tune

    for kind in populations if pbt else ():  # each trains for real, every trial to max_t
        top = {
            "searcher": "random",
            "search": {
                "arch": {"choice": ARCHS},
                "lr_g": {"loguniform": [LRS[0], LRS[-1]]},
                "lr_d": {"loguniform": [LRS[0], LRS[-1]]},
            },
            "scheduler": {"type": kind, "perturbation_interval": 3, "max_t": max_t},
        }
        base_pbt = {**base, "checkpoint_every": 1, "keep_checkpoints": 2}
        name = f"{kind}-0"
        # no max_concurrent: a population is the trials that exist (the searcher would hold
        # back all but 2); one CPU each on the 2-CPU Ray still runs 2 at a time
        population = {"resources": {"cpu": 1}, "num_samples": len(table)}
        spec = {"name": name, "metric": metric, "base": base_pbt, "seed": 0, **population, **top}
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        t1 = time.time()
        rows = run_tune(str(path), storage=str(work / "results"), trainable=gan_trial)
        values = pbt_trace(work / "results" / name, rows, metric)
        out["methods"][kind] = [
            {"seed": 0, **summary(values, best, budget), "wall_s": round(time.time() - t1)}
        ]
        print(f"search  {kind}: {json.dumps(out['methods'][kind][0])}", flush=True)
        out["methods"][kind][0]["trace"] = values
    return out


def pbt_trace(exp: Path, rows: list[dict], metric: str) -> list[float]:
    """PBT's trial-epochs in the order they were reported, from each trial's progress.csv (Ray's
    result.json of a trial that PBT restarted can come back empty)."""
    import csv

    events = []
    for r in rows:
        path = exp / r["trial"] / "progress.csv"
        if not path.exists():
            continue
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get(metric):
                    events.append((float(row["timestamp"]), float(row[metric])))
    return [v for _, v in sorted(events, key=lambda e: e[0])]


def run(args) -> dict:
    """27 configs x max_t 9 (--quick: 3) on quick.yaml's 8192 images (--quick: 512), trained once
    (or an earlier run's --search-table); random+ASHA and Optuna+ASHA replay the measured curves
    through real Ray experiments (10 seeds, --quick 1: seconds each); PBT and PB2 train for real."""
    q = args.quick
    return bench_search(
        limit=512 if q else 8192,
        max_t=3 if q else 9,
        seeds=1 if q else 10,
        data_dir=args.data_dir,
        table_file=args.search_table,
        jobs=args.jobs or os.cpu_count() or 1,
        populations=tuple(args.search_population.split(",")),
    )
