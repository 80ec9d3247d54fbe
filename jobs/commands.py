"""The Ray jobs' command lines, without Ray: `gan tune` and `python jobs/tune.py` take the same
options, as do `gan final` and `python jobs/final.py`, so --help and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gan.errors import guarded


def tune_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the tune job."""
    p.add_argument("config", help="a tune YAML, e.g. tune_configs/quick.yaml")
    p.add_argument(
        "--storage", help="results root: a shared path or s3://bucket/dir (default ./results)"
    )
    p.add_argument("--name", help="experiment name (default: the YAML's name); the resume key")
    p.add_argument("--require-gpu", action="store_true", help="fail when the cluster has no GPU")


def final_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of the final retrain job."""
    p.add_argument("--from", dest="from_dir", help="experiment dir or best.yaml (default: newest)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--storage", help="results root: a shared path or s3://... (default ./results)")
    p.add_argument("--cpu", type=float, default=4, help="CPUs for the run")
    p.add_argument("--gpu", type=float, default=1, help="GPUs for the run")
    p.add_argument("--max-failures", type=int, default=3, help="retries from the last checkpoint")
    p.add_argument("--require-gpu", action="store_true", help="fail when the cluster has no GPU")


# job: (what it does, its arguments, what a stop by Ctrl-C or SIGTERM tells the user)
JOBS = {
    "tune": (
        "run or resume a Ray Tune experiment of a tune YAML (ASHA on FID); writes best.yaml",
        tune_arguments,
        "rerun the same command to resume the experiment",
    ),
    "final": (
        "retrain a tune experiment's best config as one Ray trial: its own GPU, retries from "
        "its last checkpoint",
        final_arguments,
        "rerun the same command to resume the retrain",
    ),
}


def check_tune(args: argparse.Namespace) -> None:
    """The tune YAML's errors (a missing file, a bad key), without Ray or torch."""
    from jobs.tune_spec import load_spec

    load_spec(args.config, args.name)


def check_final(args: argparse.Namespace) -> None:
    """The final retrain's config errors (no experiment, a bad override), without Ray or torch."""
    from gan.best import final_values
    from gan.config import make_config
    from jobs.tune_spec import resolve_paths

    make_config(resolve_paths(final_values(args.from_dir, args.set)[0]))


# job: what it checks before its module (Ray, torch: seconds to import) is imported
CHECKS = {"tune": check_tune, "final": check_final}


def script_parser(job: str) -> argparse.ArgumentParser:
    """The command line of `python jobs/<job>.py`: `gan <job>`'s options."""
    about, add_arguments, _ = JOBS[job]
    p = argparse.ArgumentParser(
        prog=f"python jobs/{job}.py", description=f"{about}; the same as gan {job}"
    )
    add_arguments(p)
    return p


def check_script(job: str, argv: list[str] | None = None) -> None:
    """`python jobs/<job>.py ARGS` before the script imports Ray and torch: --help, a usage error
    and a config error answer at once (exit 0 or 2, one line); a good config goes on."""
    args = script_parser(job).parse_args(argv)
    code = guarded(job, lambda: CHECKS[job](args), JOBS[job][2])
    if code:
        sys.exit(code)


def job_main(job: str, run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """`python jobs/<job>.py ARGS`: the same as `gan <job> ARGS`, its messages headed `<job>:`."""
    args = script_parser(job).parse_args(argv)
    return guarded(job, lambda: run(args), JOBS[job][2])
