"""The final retrain as a Ray job: `python jobs/final.py [--from EXPERIMENT] [--set epochs=1000]`.

Retrains the winner of a tune experiment (its best.yaml; default the newest under results/) as
one Ray Tune trial with its own CPU/GPU request, retried from its last checkpoint when it
crashes (--max-failures); rerunning the same command resumes it. The run lands in
<storage>/<name>-final/<trial>/ like any trial. On one machine `gan train --best` is the same
retrain without Ray, with the same defaults (gan.best.FINAL: 1000 epochs, FID every 50).
"""

from __future__ import annotations

import argparse
import sys

from gan.best import final_values
from gan.cli import guarded
from gan.config import GanError, make_config, to_dict
from jobs.raylocal import start_ray
from jobs.tune import (
    build_tuner,
    check_resources,
    fit,
    ray_cleanup,
    resolve_storage,
)
from jobs.tune_spec import Spec, resolve_paths


def final_spec(cfg, name: str, cpu: float, gpu: float, max_failures: int) -> Spec:
    """A one-trial experiment of a fixed config: no search, no early stopping."""
    return Spec(
        name=name,
        metric=cfg.metric,
        mode="min",
        base=to_dict(cfg),
        search={},
        scheduler={"type": "fifo", "grace_period": 1, "reduction_factor": 2, "max_t": cfg.epochs},
        cpu=cpu,
        gpu=gpu,
        num_samples=1,
        max_concurrent=0,
        seed=0,
        max_failures=max_failures,
        num_to_keep=1,
    )


def run_final(
    from_dir: str | None = None,
    overrides: list[str] = (),
    storage: str | None = None,
    cpu: float = 4,
    gpu: float = 1,
    max_failures: int = 3,
    require_gpu: bool = False,
) -> dict:
    """Retrain (or resume retraining) the best config; returns its final metrics and run dir."""
    values, note = final_values(from_dir, overrides)
    cfg = make_config(resolve_paths(values))
    if note:
        print(f"final retrain: {note}", flush=True)
    storage = resolve_storage(storage)
    start_ray()
    spec = check_resources(
        final_spec(cfg, f"{cfg.name}-final", cpu, gpu, max_failures), require_gpu
    )
    print(f"final retrain: {cfg.arch} for {cfg.epochs} epochs in {storage}/{spec.name}", flush=True)
    results = fit(build_tuner(spec, storage))  # stopped by Ctrl-C or SIGTERM: no "done" line
    result = results[0]
    if result.error is not None:
        raise GanError(
            f"the final retrain failed after {max_failures} retries: {result.error}; "
            "rerun the same command to resume from its last checkpoint"
        )
    metrics = result.metrics or {}
    print(
        f"done: epoch {metrics.get('epoch')}, {cfg.metric} {metrics.get(cfg.metric)}; "
        f"run dir {result.path}"
    )
    return {**metrics, "run_dir": result.path}


def main(argv: list[str] | None = None) -> int:
    """Command line of the final retrain job; SIGTERM stops it as Ctrl-C does (resumable)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="from_dir", help="experiment dir or best.yaml (default: newest)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--storage", help="results root: a shared path or s3://... (default ./results)")
    p.add_argument("--cpu", type=float, default=4, help="CPUs for the run")
    p.add_argument("--gpu", type=float, default=1, help="GPUs for the run")
    p.add_argument("--max-failures", type=int, default=3, help="retries from the last checkpoint")
    p.add_argument("--require-gpu", action="store_true", help="fail when the cluster has no GPU")
    args = p.parse_args(argv)

    def command() -> int:
        run_final(
            args.from_dir,
            args.set,
            args.storage,
            args.cpu,
            args.gpu,
            args.max_failures,
            args.require_gpu,
        )
        return 0

    return guarded(
        "final", command, "rerun the same command to resume the retrain", cleanup=ray_cleanup()
    )


if __name__ == "__main__":
    from jobs.final import main as _main  # the importable module, so Ray pickles by reference

    sys.exit(_main())
