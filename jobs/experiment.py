"""Running a Ray Tune experiment from a job (the search, its re-evaluation, the final retrain):
its RunConfig, fit() with Ctrl-C and SIGTERM as a resumable stop, and the Ray it starts."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import ray
from ray import tune

from jobs.search import make_callbacks
from jobs.trial import LostCheckpoints
from jobs.tune_spec import Spec


def run_config(
    spec: Spec, name: str, storage: str, keep: int | None, exp_path: str
) -> tune.RunConfig:
    """Ray's RunConfig of an experiment `name` under `storage`: the search, or its re-evaluation
    inside the search's folder `exp_path`. `keep` checkpoints per trial by the metric, retries,
    the max_t stop, and the spec's loggers, which write beside the search's trials."""
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=keep,
            checkpoint_score_attribute=spec.metric,
            checkpoint_score_order=spec.mode,  # the default is "max": wrong for FID
        ),
        sync_config=tune.SyncConfig(sync_artifacts="://" in storage),  # to s3 as they appear
        # a trial ends at max_t before any scheduler sees the result: PBT would otherwise exploit
        # at the last epoch and restart a finished trial from its donor, again and again
        stop={"epoch": spec.scheduler["max_t"]},
        callbacks=[LostCheckpoints(), *make_callbacks(spec, exp_path)],
        verbose=1,
    )


def fit(tuner: tune.Tuner):
    """tuner.fit(), or KeyboardInterrupt when Ctrl-C or SIGTERM stopped it. Tune stops gracefully
    (the experiment saved; the same command resumes it), returns the unfinished trials as
    results and marks them terminated; nothing may be written from them then. Its SIGINT
    handler, which stays in place after a run, puts the one before it back when a signal came."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)
    results = tuner.fit()
    after = signal.getsignal(signal.SIGINT)
    if main:
        signal.signal(signal.SIGINT, before)  # a later Ctrl-C (or SIGTERM) stops the job itself
    watched = main and os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
    if watched and after is before:
        raise KeyboardInterrupt
    return results


@contextlib.contextmanager
def own_ray():
    """Shut Ray down on the way out, however the job ends, if it was not running on the way in:
    a Ray the job starts, it stops; one it was given (a test's, a notebook's) stays."""
    owned = not ray.is_initialized()
    try:
        yield
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()
