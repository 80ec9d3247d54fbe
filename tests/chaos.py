"""A trial that stops at a chosen point of its second epoch until a test kills it with SIGKILL.

park_trial is gan's own trial function with one of three points armed, chosen by the trial's
lr_g (PHASE_OF_LR): inside an epoch (before a G step), inside a checkpoint write (half of the
checkpoint's bytes in its temp file, fsynced), or inside an evaluation (after its first batch of
samples). There the worker writes `<exp>/<trial>.parked` holding its pid and sleeps, so that a
test can kill the worker, or the driver, at exactly that point. A trial parks once: the marker
stays, so the resumed trial runs through.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from pathlib import Path

PARK_EPOCH = 2
PHASE_OF_LR = {1.0e-4: "epoch", 2.0e-4: "checkpoint", 3.0e-4: "evaluation"}


def park(marker: Path) -> None:
    """Say where this worker is, then wait for the kill."""
    marker.write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def arm(phase: str, run_dir: Path, marker: Path) -> None:
    """Patch, in this worker only, the one function that reaches `phase` of epoch PARK_EPOCH."""
    import gan.io
    import gan.metrics
    import gan.steps

    def past_first_checkpoint() -> bool:  # epoch PARK_EPOCH's work has begun
        return (run_dir / "checkpoints" / f"ckpt_{PARK_EPOCH - 1:06d}.pt").exists()

    if phase == "epoch":
        g_step, calls = gan.steps.g_step, itertools.count(1)

        def parked_g_step(*args, **kwargs):
            if past_first_checkpoint() and next(calls) == 3:
                park(marker)
            return g_step(*args, **kwargs)

        gan.steps.g_step = parked_g_step
    elif phase == "checkpoint":
        atomic_write = gan.io.atomic_write

        def parked_write(path, write, what, needed=None):
            if Path(path).name != f"ckpt_{PARK_EPOCH:06d}.pt":
                return atomic_write(path, write, what, needed)

            def half(f):
                buf = io.BytesIO()
                write(buf)
                f.write(buf.getvalue()[: buf.tell() // 2])
                f.flush()
                os.fsync(f.fileno())
                park(marker)

            return atomic_write(path, half, what, needed)

        gan.io.atomic_write = parked_write
    elif phase == "evaluation":
        batches = gan.metrics.batches

        def parked_batches(*args, **kwargs):
            for i, batch in enumerate(batches(*args, **kwargs)):
                if i == 1 and past_first_checkpoint():
                    park(marker)
                yield batch

        gan.metrics.batches = parked_batches
    else:
        raise ValueError(phase)


def park_trial(config, exp_dir="", mode="min"):
    """gan's trial function, parked once at the phase of its lr_g (see the module's text); a
    trial of an lr_g not in PHASE_OF_LR runs as gan's own."""
    from ray import tune

    from jobs.trial import gan_trial

    trial = Path(tune.get_context().get_trial_dir()).name
    marker = Path(exp_dir) / f"{trial}.parked"
    phase = PHASE_OF_LR.get(config["lr_g"])  # another lr_g: the trial runs through
    if phase and not marker.exists():
        arm(phase, Path(exp_dir) / trial, marker)
    gan_trial(config, exp_dir, mode)


def parked(exp: Path) -> dict[str, int]:
    """{trial: worker pid} of the trials that have parked so far."""
    found = {}
    for p in exp.glob("*.parked"):
        text = p.read_text()
        if text:  # a marker being written
            found[p.stem] = int(text)
    return found
