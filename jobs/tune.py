"""The tune job: `gan tune tune_configs/quick.yaml [--storage PATH|s3://...] [--name N]`, or
`python jobs/tune.py ...` with the same options (what `ray job submit` runs on a cluster).

Ray Tune runs one function trainable per sampled config (gan.train.train in the trial's dir),
ASHA stops weak trials on the metric every trial reports at each evaluation, and the end writes
best.yaml, trials.csv and comparison.png into <storage>/<name>/. Rerunning the same command
resumes an interrupted experiment: finished trials are kept, unfinished ones continue from
their checkpoints.
"""

from __future__ import annotations

if __name__ == "__main__":  # the script: --help and config errors answer before Ray's import
    from jobs.commands import check_script

    check_script("tune")

import argparse
import contextlib
import os
import posixpath
import sys
import time
from dataclasses import replace
from pathlib import Path

import ray
import yaml
from ray import tune

from gan.config import GanError, make_config, read_yaml
from jobs.commands import job_main
from jobs.experiment import fit, own_ray, run_config
from jobs.raylocal import start_ray
from jobs.reevaluate import rank_by_mean, reevaluate
from jobs.schedule import POPULATION
from jobs.search import tune_config
from jobs.trial import gan_trial, trial_dirname
from jobs.tune_report import publish as publish_results
from jobs.tune_report import read_bytes, storage_fs, trial_rows, write_bytes
from jobs.tune_spec import Spec, load_spec

# -- the driver ---------------------------------------------------------------------------------


def check_resources(spec: Spec, require_gpu: bool = False) -> Spec:
    """Fit the trials' request to the cluster: one no node can hold would stay PENDING forever."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if spec.gpu > 0 and gpus == 0:
        if require_gpu:
            raise GanError(
                f"resources key 'gpu': trials ask for {spec.gpu} GPU but the Ray cluster "
                "has none; connect to a GPU cluster (RAY_ADDRESS) or drop --require-gpu"
            )
        print(
            f"note: the Ray cluster has no GPU; running the trials on CPU instead of "
            f"{spec.gpu} GPU each (pass --require-gpu to fail instead)",
            flush=True,
        )
        device = "cpu" if spec.base["device"].startswith("cuda") else spec.base["device"]
        spec = replace(spec, gpu=0.0, base={**spec.base, "device": device})
    if spec.gpu > gpus:
        raise GanError(
            f"resources key 'gpu': each trial asks for {spec.gpu} GPUs but the largest "
            f"node has {gpus}; lower it so the trials can start"
        )
    if spec.cpu > cpus:
        raise GanError(
            f"resources key 'cpu': each trial asks for {spec.cpu} CPUs but the largest "
            f"node has {cpus}; lower it so the trials can start"
        )
    return spec


def resolve_storage(storage: str | None) -> str:
    """An absolute path (default ./results) or a URI kept as given."""
    if storage and "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage or "results").expanduser().resolve())


def check_same_experiment(spec_file: str, name: str, exp_path: str) -> bytes | None:
    """Refuse to resume an experiment from another tune config; returns the tune.yaml to write
    (None: already there) once the experiment really starts (remember_experiment)."""
    fs, root = storage_fs(exp_path)
    raw = {**read_yaml(spec_file), "name": name}
    saved = read_bytes(fs, posixpath.join(root, "tune.yaml"))
    if saved is None:
        return yaml.safe_dump(raw, sort_keys=False).encode()
    if yaml.safe_load(saved) != raw:
        raise GanError(
            f"experiment {exp_path} was started from a different tune config (its "
            f"tune.yaml); pass --name NEW for a new experiment, or delete {exp_path}"
        )
    return None


def remember_experiment(exp_path: str, tune_yaml: bytes | None) -> None:
    """Write <exp>/tune.yaml: only now, so that a refused start does not block its correction."""
    if tune_yaml is not None:
        fs, root = storage_fs(exp_path)
        write_bytes(fs, posixpath.join(root, "tune.yaml"), tune_yaml)


# keys whose searched values change what a trial reads: each listed value is checked up front
from gan.config import INPUT_KEYS  # noqa: E402  (the fields with input=True)


def preflight(spec: Spec) -> None:
    """What every trial needs, checked in the driver before Ray starts, so that a missing
    dataset or weights file fails in seconds, not once per trial after minutes: the data is
    readable (or downloadable, then cached for the trials), and metric=fid has its weights."""
    from gan.data import load_split
    from gan.extractors import load_weights, resolve_weights, ways_out

    variants = [spec.base]
    for key in INPUT_KEYS:
        domain = spec.search.get(key)
        values = domain.get("grid_search") if isinstance(domain, dict) else None
        values = values or getattr(domain, "categories", None) or []
        variants += [{**spec.base, key: v} for v in values]
    for values in variants:
        cfg = make_config(values)
        load_split(cfg, "train")
        load_split(cfg, cfg.fid_ref_split)
        if cfg.metric == "fid" or cfg.kid:
            weights = resolve_weights(cfg)
            load_weights(weights.path, "FID weights", ways_out())


def build_tuner(spec: Spec, storage: str, trainable=gan_trial) -> tune.Tuner:
    """A new Tuner for the experiment, or the restored one when <storage>/<name> already exists."""
    exp_path = f"{storage}/{spec.name}"
    remote = "://" in storage
    fn = tune.with_parameters(trainable, exp_dir="" if remote else exp_path, mode=spec.mode)
    fn = tune.with_resources(fn, {"cpu": spec.cpu, "gpu": spec.gpu})
    if tune.Tuner.can_restore(exp_path):
        print(f"resuming experiment {exp_path}", flush=True)
        return tune.Tuner.restore(exp_path, fn, resume_unfinished=True, resume_errored=True)
    # best by metric; Ray always keeps the latest as well. PBT (and PB2) keeps them all: an
    # exploit restores the donor's checkpoint of the interval, which the donor may have moved past
    keep = None if spec.scheduler["type"] in POPULATION else spec.num_to_keep
    return tune.Tuner(
        fn,
        param_space=spec.param_space(),
        tune_config=tune_config(spec, trial_dirname),
        run_config=run_config(spec, spec.name, storage, keep, exp_path),
    )


# what the trackers export while an experiment runs (mlflow.set_tracking_uri sets
# MLFLOW_TRACKING_URI, an offline W&B run sets WANDB_MODE): put back afterwards, so that a later
# experiment in the same process logs where its own spec says, not into this one's store
TRACKER_ENV = ("MLFLOW_TRACKING_URI", "WANDB_MODE")


@contextlib.contextmanager
def environ_kept(names: tuple[str, ...]):
    """Restore these environment variables, set or unset, as they were on entry."""
    saved = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_tune(
    spec_file: str,
    storage: str | None = None,
    name: str | None = None,
    require_gpu: bool = False,
    trainable=gan_trial,
) -> list[dict]:
    """Run (or resume) the experiment of a tune YAML; returns the leaderboard rows, best first."""
    spec = load_spec(spec_file, name)
    storage = resolve_storage(storage)
    exp_path = f"{storage}/{spec.name}"
    tune_yaml = check_same_experiment(spec_file, spec.name, exp_path)
    preflight(spec)
    start_ray()
    spec = check_resources(spec, require_gpu)
    remember_experiment(exp_path, tune_yaml)
    # Ray snapshots the experiment at every kept checkpoint and then warns that it does so often
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with environ_kept(TRACKER_ENV):
        t0 = time.time()
        results = fit(build_tuner(spec, storage, trainable))
        print(f"tune wall time {time.time() - t0:.0f} s", flush=True)
        rows = trial_rows(results, spec)
        if spec.reevaluate:
            rows = rank_by_mean(rows, reevaluate(spec, rows, storage, trainable), spec)
    return publish_results(rows, spec, exp_path)


def run(args: argparse.Namespace) -> int:
    """`gan tune` and `python jobs/tune.py`: run (or resume) the experiment of args.config. SIGTERM
    (Kubernetes, `ray job stop`, `docker stop`) stops it as Ctrl-C does: Ray Tune saves the
    experiment state, which the same command resumes."""
    with own_ray():
        run_tune(args.config, args.storage, args.name, args.require_gpu)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the tune job (`python jobs/tune.py`, `python -m jobs.tune`)."""
    return job_main("tune", run, argv)


# Run as a script, this file is the module __main__, which nothing imports by name: Ray runs only
# what jobs.trial, jobs.search and jobs.reevaluate define, so no function here is pickled
if __name__ == "__main__":
    sys.exit(main())
