"""How a tune explores: the searcher (random, grid, Optuna's TPE) that proposes configs, the
scheduler (ASHA, FIFO, Population Based Training, PB2) that stops or mutates trials, and the
optional experiment trackers (MLflow, Weights & Biases) that see every result."""

from __future__ import annotations

import json
import os
import posixpath

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from jobs.tune_report import read_bytes
from jobs.tune_spec import Spec


def make_search_alg(spec: Spec):
    """The searcher of the spec, holding at most `max_concurrent` trials running (0: no limit).

    random and grid: Ray's variant generator (grid: every `choice` was made a grid by the spec);
    optuna: TPE, seeded by the spec's seed, over the same domains; `num_samples` trials in all.
    """
    if spec.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
        if spec.max_concurrent:
            return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
        return searcher
    # the limit goes to the generator itself: Tune ignores max_concurrent_trials with one
    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent)


class ResumableASHA(ASHAScheduler):
    """ASHA that refills its rungs from a restored trial's result.json (Ray does not: ray#30838)."""

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        try:
            path = posixpath.join(trial.path, "result.json")
        except RuntimeError:  # a new trial: no directory, no history yet
            return
        data = read_bytes(trial.storage.storage_filesystem, path)
        bracket = self._trial_info[trial.trial_id]
        for line in (data or b"").decode().splitlines():
            row = json.loads(line)
            if self._time_attr in row and self._metric in row:
                bracket.on_result(trial, row[self._time_attr], self._metric_op * row[self._metric])


def make_scheduler(spec: Spec):
    """ASHA on the epoch counter, FIFO (every trial runs to the end), or PBT / PB2 over the
    searched keys a checkpoint may resume under (gan.config.RETUNABLE)."""
    s = spec.scheduler
    if s["type"] == "fifo":
        return FIFOScheduler()
    # a choice's values as a list: PBT then moves to a neighbouring value, where it would
    # multiply a number drawn from a domain by 0.8 or 1.2 (a value off the list)
    mutations = {
        k: list(d.categories) if hasattr(d, "categories") else d
        for k, d in ((k, spec.search[k]) for k in s.get("mutate", ()))
    }
    if s["type"] == "pb2":
        from ray.tune.schedulers.pb2 import PB2

        # PB2 models the metric over the keys' values with a Gaussian process and picks the
        # next ones within these bounds (a choice spans its lowest to its highest value)
        bounds = {
            k: [min(d), max(d)] if isinstance(d, list) else [d.lower, d.upper]
            for k, d in mutations.items()
        }
        return PB2(
            time_attr="epoch",
            perturbation_interval=s["perturbation_interval"],
            hyperparam_bounds=bounds,
            quantile_fraction=s["quantile_fraction"],
            synch=True,
        )
    if s["type"] == "pbt":
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=s["perturbation_interval"],
            hyperparam_mutations=mutations,
            quantile_fraction=s["quantile_fraction"],
            resample_probability=s["resample_probability"],
            custom_explore_fn=clip_to_domains(mutations),
            synch=True,  # every trial reaches the interval before any exploits: same decisions
        )
    return ResumableASHA(
        time_attr="epoch",
        max_t=s["max_t"],
        grace_period=s["grace_period"],
        reduction_factor=s["reduction_factor"],
    )


def clip_to_domains(mutations: dict):
    """PBT's explore step multiplies a value by 0.8 or 1.2, which can leave its search range
    (a beta above 1): bring every mutated number back inside its domain's bounds."""

    def explore(config: dict) -> dict:
        for key, domain in mutations.items():
            low, high = getattr(domain, "lower", None), getattr(domain, "upper", None)
            if low is not None and high is not None and isinstance(config.get(key), float):
                config[key] = min(max(config[key], low), high)
        return config

    return explore


def make_callbacks(spec: Spec, exp_path: str) -> list:
    """Ray Tune's logger callbacks for the spec's `loggers`: MLflow logs every trial as a run of
    the experiment `spec.name`, to MLFLOW_TRACKING_URI or else an SQLite store, <exp>/mlflow.db
    (MLflow 3 refuses its old file store unless told to)."""
    callbacks = []
    if "mlflow" in spec.loggers:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        class MLflowLogger(MLflowLoggerCallback):
            """Ray's MLflow logger, whose trials may restart under new values: a PBT exploit
            restarts a trial with mutated learning rates, and MLflow refuses to change a logged
            param. A run's params are its starting config; the values an exploit gave a trial
            are in the trial's log.jsonl (its retune rows)."""

            def log_trial_start(self, trial) -> None:
                if trial not in self._trial_runs:
                    super().log_trial_start(trial)

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri and "://" not in exp_path:
            uri = "sqlite:///" + posixpath.join(exp_path, "mlflow.db")
        callbacks.append(
            MLflowLogger(tracking_uri=uri, experiment_name=spec.name, save_artifact=False)
        )
    if "wandb" in spec.loggers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        mode = wandb_mode()
        # W&B's own files beside the trials; the driver's folder when they go to remote storage
        root = exp_path if "://" not in exp_path else os.getcwd()
        if mode == "offline":
            os.environ["WANDB_MODE"] = "offline"  # Ray asks for an API key unless it reads this
            where = posixpath.join(root, "wandb")
            print(
                f"W&B: no API key (WANDB_API_KEY or wandb login); trials are logged offline to "
                f"{where}: `wandb sync {where}/offline-run-*` uploads them",
                flush=True,
            )
        project = os.environ.get("WANDB_PROJECT") or spec.name
        callbacks.append(WandbLoggerCallback(project=project, mode=mode, dir=root))
    return callbacks


def wandb_mode() -> str:
    """WANDB_MODE when set; online with an API key (WANDB_API_KEY, or `wandb login`'s); else
    offline: the runs are written next to the experiment, for `wandb sync` to upload later."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    import wandb

    try:
        wandb.ensure_configured()
        if wandb.api.api_key:
            return "online"
    except AttributeError:  # an older wandb without these: no stored key found
        pass
    return "offline"


def tune_config(spec: Spec, trial_dirname) -> tune.TuneConfig:
    """Ray's TuneConfig of the spec: metric, searcher, scheduler, samples."""
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        scheduler=make_scheduler(spec),
        search_alg=make_search_alg(spec),
        num_samples=spec.num_samples,
        trial_dirname_creator=trial_dirname,
        reuse_actors=True,  # one process per concurrent slot: torch is imported once, not per trial
    )
