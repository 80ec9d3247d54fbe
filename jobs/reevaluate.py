"""Seed re-evaluation: once a search ends, retrain its best `top` configs with `seeds` new seeds
each (every one to the end: no early stopping) and rank them by the mean of their best metric.

GAN runs are noisy enough that one lucky seed can win a search; the mean over new seeds is an
estimate free of that selection. The runs are a second Ray experiment, <exp>/reevaluate/, which
the same command resumes like the search."""

from __future__ import annotations

import math
import statistics

from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from jobs.experiment import fit, run_config
from jobs.tune_report import MEAN, SEEDS, STD, _finite, storage_fs, trial_rows, write_bytes
from jobs.tune_spec import Spec

FOLDER = "reevaluate"


def candidates(rows: list[dict], spec: Spec) -> list[dict]:
    """The best `top` rows with a finite metric that finished or were stopped by ASHA."""
    ok = [r for r in rows if _finite(r[spec.metric]) and r["status"] in ("completed", "stopped")]
    return ok[: spec.reevaluate["top"]]


def new_seeds(spec: Spec) -> list[int]:
    """Seeds none of the search's trials used: the base seed + 1, + 2, ..."""
    return [int(spec.base["seed"]) + 1 + i for i in range(spec.reevaluate["seeds"])]


def seed_trial(config: dict, configs: list[dict], run, exp_dir: str = "", mode: str = "min"):
    """One re-evaluation run: candidate `config['candidate']`'s full config under a new seed."""
    full = {**configs[config["candidate"]], "seed": config["seed"]}
    run(full, exp_dir, mode)


def reevaluate(spec: Spec, rows: list[dict], storage: str, trainable) -> dict[str, list[float]]:
    """Run (or resume) the re-evaluation; returns trial id -> its best metric under each seed."""
    top = candidates(rows, spec)
    if not top:
        return {}
    configs = [dict(r["_result"].config) for r in top]
    # the epochs each candidate would have reached unstopped: ASHA's max_t
    configs = [{**c, "epochs": min(int(c["epochs"]), spec.scheduler["max_t"])} for c in configs]
    exp_path = f"{storage}/{spec.name}"
    remote = "://" in storage
    sub = f"{exp_path}/{FOLDER}"
    fn = tune.with_parameters(
        seed_trial,
        configs=configs,
        run=trainable,
        exp_dir="" if remote else sub,
        mode=spec.mode,
    )
    fn = tune.with_resources(fn, {"cpu": spec.cpu, "gpu": spec.gpu})
    epochs = sorted({c["epochs"] for c in configs})
    print(
        f"re-evaluating the best {len(top)} configs with seeds {new_seeds(spec)}: "
        f"{len(top) * len(new_seeds(spec))} runs to epoch(s) {epochs}",
        flush=True,
    )
    if tune.Tuner.can_restore(sub):
        tuner = tune.Tuner.restore(sub, fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            fn,
            param_space={
                "candidate": tune.grid_search(list(range(len(top)))),
                "seed": tune.grid_search(new_seeds(spec)),
            },
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                scheduler=FIFOScheduler(),
                search_alg=BasicVariantGenerator(max_concurrent=spec.max_concurrent),
                trial_dirname_creator=lambda t: t.trial_id,
                reuse_actors=True,
            ),
            run_config=run_config(spec, FOLDER, exp_path, 1, exp_path),
        )

    results = fit(tuner)
    runs: dict[str, list[tuple[int, float]]] = {r["trial"]: [] for r in top}  # (seed, metric)
    for row in trial_rows(results, spec):  # best first, not in seed order
        config = row["_result"].config
        runs[top[config["candidate"]]["trial"]].append((config["seed"], row[spec.metric]))
    write_table(runs, spec, sub)
    return {trial: [value for _, value in sorted(pairs)] for trial, pairs in runs.items()}


def write_table(runs: dict[str, list[tuple[int, float]]], spec: Spec, sub: str) -> None:
    """<exp>/reevaluate/seeds.csv: one line per candidate and seed."""
    fs, root = storage_fs(sub)
    lines = [f"trial,seed,{spec.metric}"]
    for trial, pairs in runs.items():
        lines += [f"{trial},{seed},{value}" for seed, value in sorted(pairs)]
    write_bytes(fs, f"{root}/seeds.csv", ("\n".join(lines) + "\n").encode())


def rank_by_mean(rows: list[dict], scores: dict[str, list[float]], spec: Spec) -> list[dict]:
    """Rows with the seeds' mean, spread and count; the re-evaluated ones first, by their mean
    (a run without a finite metric counts as the worst), the others after them as they were."""
    sign = 1 if spec.mode == "min" else -1
    out = []
    for row in rows:
        values = scores.get(row["trial"])
        if values is None:
            out.append({**row, MEAN: math.nan, STD: math.nan, SEEDS: 0})
            continue
        finite = [v for v in values if _finite(v)]
        whole = finite and len(finite) == len(values)  # a failed or diverged seed: the worst
        mean = statistics.fmean(finite) if whole else math.inf * sign
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        out.append({**row, MEAN: mean, STD: std, SEEDS: len(values)})
    ranked = sorted((r for r in out if r[SEEDS]), key=lambda r: sign * r[MEAN])
    return ranked + [r for r in out if not r[SEEDS]]
