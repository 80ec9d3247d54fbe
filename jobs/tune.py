"""The tune job: `python jobs/tune.py tune_configs/quick.yaml [--storage PATH|s3://...] [--name N]`.

Ray Tune runs one function trainable per sampled config (gan.train.train in the trial's dir),
ASHA stops weak trials on the metric every trial reports at each evaluation, and the end writes
best.yaml, trials.csv and comparison.png into <storage>/<name>/. Rerunning the same command
resumes an interrupted experiment: finished trials are kept, unfinished ones continue from
their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import posixpath
import secrets
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from gan import checkpoint as ck
from gan.cli import guarded
from gan.config import GanError, make_config, read_yaml
from jobs.tune_report import (
    DIVERGED,
    USER_ERROR,
    read_bytes,
    storage_fs,
    write_bytes,
    write_outputs,
)
from jobs.tune_spec import Spec, load_spec

# -- inside a trial ----------------------------------------------------------------------------


def make_report(metric: str, mode: str):
    """The `report` callable train() gets: every evaluation -> tune.report with its checkpoint."""
    worst = DIVERGED if mode == "min" else -DIVERGED

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        row = {k: v for k, v in metrics.items() if isinstance(v, (bool, int, float, str))}
        value = row.get(metric)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            row[metric] = worst  # every report must carry a usable metric, or the experiment stops
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(row, checkpoint=checkpoint)  # copies the checkpoint to storage before returning

    return report


def restore_checkpoint(checkpoint, run_dir: Path) -> None:
    """Put Ray's checkpoint where train() resumes from, unless run_dir has a newer one."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        src = Path(folder) / "checkpoint.pt"
        epoch = ck.load_checkpoint(src)["epoch"]
        local = ck.numbered(run_dir)
        if local and int(ck.CKPT_RE.search(local[-1].name).group(1)) >= epoch:
            return  # same storage, same run: its own newest checkpoint is at least as far along
        dst = ck.checkpoint_path(run_dir, epoch)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst.with_suffix(".tmp"))
        dst.with_suffix(".tmp").replace(dst)


def gan_trial(config: dict, exp_dir: str = "", mode: str = "min") -> None:
    """Ray Tune function trainable: train one config in its trial dir, reporting each evaluation."""
    from gan.train import train

    try:
        cfg = make_config(config)
        trial_dir = Path(tune.get_context().get_trial_dir())  # the local working dir of the trial
        # on a local or shared filesystem, write straight into <storage>/<name>/<trial>/ so that
        # logs, samples and TensorBoard events persist and a resumed trial finds them; on s3 Ray
        # syncs them up
        run_dir = Path(exp_dir) / trial_dir.name if exp_dir else trial_dir
        restore_checkpoint(tune.get_checkpoint(), run_dir)
        train(cfg, run_dir, make_report(cfg.metric, mode))
    except GanError as e:
        # a user error (e.g. a searched batch_size above the dataset size): the same config
        # fails the same way on every retry, and a raised error prints Ray's traceback. The trial
        # ends with the message as its last result (no epoch: ASHA skips it); trials.csv shows
        # it as failed, with this message in its error column
        worst = DIVERGED if mode == "min" else -DIVERGED
        tune.report({config.get("metric", "fid"): worst, USER_ERROR: str(e)})


def trial_dirname(trial) -> str:
    """Short, stable trial directory names: the trial id."""
    return trial.trial_id


# -- the scheduler ------------------------------------------------------------------------------


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
    """ASHA on the epoch counter (or FIFO: every trial runs to the end)."""
    s = spec.scheduler
    if s["type"] == "fifo":
        return FIFOScheduler()
    return ResumableASHA(
        time_attr="epoch",
        max_t=s["max_t"],
        grace_period=s["grace_period"],
        reduction_factor=s["reduction_factor"],
    )


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
INPUT_KEYS = ("dataset", "data_path", "data_dir", "classes", "fid_weights", "metric", "kid")


def preflight(spec: Spec) -> None:
    """What every trial needs, checked in the driver before Ray starts, so that a missing
    dataset or weights file fails in seconds, not once per trial after minutes: the data is
    readable (or downloadable, then cached for the trials), and metric=fid has its weights."""
    from gan.data import load_split
    from gan.extractors import URL_INCEPTION_V3, WAYS_OUT, load_weights, resolve_weights

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
            load_weights(weights.path, "FID weights", WAYS_OUT.format(url=URL_INCEPTION_V3))


def build_tuner(spec: Spec, storage: str, trainable=gan_trial) -> tune.Tuner:
    """A new Tuner for the experiment, or the restored one when <storage>/<name> already exists."""
    exp_path = f"{storage}/{spec.name}"
    remote = "://" in storage
    fn = tune.with_parameters(trainable, exp_dir="" if remote else exp_path, mode=spec.mode)
    fn = tune.with_resources(fn, {"cpu": spec.cpu, "gpu": spec.gpu})
    if tune.Tuner.can_restore(exp_path):
        print(f"resuming experiment {exp_path}", flush=True)
        return tune.Tuner.restore(exp_path, fn, resume_unfinished=True, resume_errored=True)
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.num_to_keep,  # best by metric; Ray always keeps the latest as well
            checkpoint_score_attribute=spec.metric,
            checkpoint_score_order=spec.mode,  # the default is "max": wrong for FID
        ),
        sync_config=tune.SyncConfig(sync_artifacts=remote),  # trial outputs to s3 as they appear
        verbose=1,
    )
    tune_config = tune.TuneConfig(
        metric=spec.metric,
        mode=spec.mode,
        scheduler=make_scheduler(spec),
        # the limit goes to the generator itself: Tune ignores max_concurrent_trials with one
        search_alg=BasicVariantGenerator(
            random_state=spec.seed, max_concurrent=spec.max_concurrent
        ),
        num_samples=spec.num_samples,
        trial_dirname_creator=trial_dirname,
        reuse_actors=True,  # one process per concurrent slot: torch is imported once, not per trial
    )
    return tune.Tuner(
        fn, param_space=spec.param_space(), tune_config=tune_config, run_config=run_config
    )


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
    t0 = time.time()
    results = build_tuner(spec, storage, trainable).fit()
    print(f"tune wall time {time.time() - t0:.0f} s", flush=True)
    return write_outputs(results, spec, exp_path)


def start_ray() -> None:
    """Join the cluster of RAY_ADDRESS (set by `ray job submit`), else start a local Ray with
    token authentication (RAY_AUTH_MODE=token unless the environment says otherwise). A local
    Ray's GCS and workers listen on this host's network address, not only on loopback; without
    the token nobody else on the network can submit work to them. Set explicitly, the mode is
    also one that Ray does not warn about at every start."""
    if ray.is_initialized():
        return
    if not os.environ.get("RAY_ADDRESS"):
        local_token_auth()
    ray.init()


def local_token_auth() -> None:
    """Token authentication for a local Ray that this process starts: RAY_AUTH_MODE=token unless
    the environment already says, and an owner-only token file. Ray reads the mode once, when
    it is imported, so its config is read again here, as Ray does when it turns the mode on."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"].lower() != "token":  # Ray reads the mode case-blind
        return
    owner_only_token()
    reload_ray_config()


def reload_ray_config() -> None:
    """Make this process's Ray read its environment again (as ray.init does for its own default)."""
    from ray._raylet import Config

    Config.initialize("")


def owner_only_token() -> Path | None:
    """The token file a local Ray authenticates with, made (or narrowed to) owner-only: Ray
    2.60 writes ~/.ray/auth_token with the umask's mode (0644 under 0022: readable by every user
    of the host). None when RAY_AUTH_TOKEN holds the token itself."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                print(f"note: {path} was readable by other users; now owner-only", flush=True)
            return path
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # 256 bits, as Ray makes its own
    except OSError as e:
        raise GanError(
            f"cannot write the local Ray's token file {path} ({e.strerror}); set "
            "RAY_AUTH_TOKEN_PATH=FILE to a writable place, or RAY_AUTH_MODE=disabled on a "
            "single-user host"
        ) from None
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line of the tune job."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a tune YAML, e.g. tune_configs/quick.yaml")
    p.add_argument(
        "--storage", help="results root: a shared path or s3://bucket/dir (default ./results)"
    )
    p.add_argument("--name", help="experiment name (default: the YAML's name); the resume key")
    p.add_argument("--require-gpu", action="store_true", help="fail when the cluster has no GPU")
    args = p.parse_args(argv)

    # SIGTERM (Kubernetes, `ray job stop`, `docker stop`) stops it as Ctrl-C does: Ray Tune
    # saves the experiment state, which the same command resumes
    def command() -> int:
        run_tune(args.config, args.storage, args.name, args.require_gpu)
        return 0

    return guarded(
        "tune", command, "rerun the same command to resume the experiment", cleanup=ray_cleanup()
    )


def ray_cleanup():
    """A callable that shuts Ray down if it is not running yet: a Ray the job starts, it stops."""
    owned = not ray.is_initialized()

    def cleanup() -> None:
        if owned and ray.is_initialized():
            ray.shutdown()

    return cleanup


if __name__ == "__main__":
    from jobs.tune import main as _main  # the importable module, so Ray pickles by reference

    sys.exit(_main())
