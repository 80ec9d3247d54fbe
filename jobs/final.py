"""The final retrain as a Ray job: `gan final [--from EXPERIMENT] [--set epochs=1000]`, or
`python jobs/final.py ...` with the same options (what `ray job submit` runs on a cluster).

Retrains the winner of a tune experiment (its best.yaml; default the newest under results/) as
one Ray Tune trial with its own CPU/GPU request, retried from its last checkpoint when it
crashes (--max-failures); rerunning the same command resumes it. The run lands in
<storage>/<name>-final/<trial>/ like any trial. On one machine `gan train --best` is the same
retrain without Ray, with the same defaults (gan.best.FINAL: 1000 epochs, FID every 50).
"""

from __future__ import annotations

if __name__ == "__main__":  # the script: --help and config errors answer before Ray's import
    from jobs.commands import check_script

    check_script("final")

import argparse
import sys

from gan.best import final_values
from gan.config import GanError, make_config, to_dict
from jobs.commands import job_main
from jobs.experiment import fit, own_ray
from jobs.raylocal import start_ray
from jobs.tune import build_tuner, check_resources, resolve_storage
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


def run(args: argparse.Namespace) -> int:
    """`gan final` and `python jobs/final.py`: retrain (or resume retraining) the best config.
    SIGTERM stops it as Ctrl-C does; the same command resumes it."""
    with own_ray():
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


def main(argv: list[str] | None = None) -> int:
    """Command line of the final retrain job (`python jobs/final.py`, `python -m jobs.final`)."""
    return job_main("final", run, argv)


# Run as a script, this file is the module __main__: Ray runs only what jobs.trial defines
if __name__ == "__main__":
    sys.exit(main())
