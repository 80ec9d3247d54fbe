"""Inside a trial: the function trainable Ray Tune runs (gan.train.train in the trial's dir),
the `report` seam it hands to train(), and how a trial picks up a checkpoint: its own after a
crash, or another trial's after a PBT exploit."""

from __future__ import annotations

import json
import math
import posixpath
import re
import shutil
from pathlib import Path

import pyarrow.fs
from ray import tune
from ray.train._internal.session import _TrainingResult

from gan import checkpoint as ck
from gan.config import GanError, make_config
from gan.io import atomic_text
from jobs.tune_report import DIVERGED, USER_ERROR


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
        checkpoint = None
        if checkpoint_dir:  # whose checkpoint: a PBT exploit hands it to another trial
            (Path(checkpoint_dir) / TRIAL_FILE).write_text(tune.get_context().get_trial_id())
            checkpoint = tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report(row, checkpoint=checkpoint)  # copies the checkpoint to storage before returning

    return report


TRIAL_FILE = "trial_id.txt"  # in every reported checkpoint: the trial that wrote it


def restore_checkpoint(checkpoint, run_dir: Path, exp_dir: str = "") -> None:
    """Put Ray's checkpoint where train() resumes from, unless run_dir has a newer one of its own.

    A checkpoint of another trial is a PBT exploit: the trial drops its own line (checkpoints,
    log) and goes on from the donor's, whose log rows up to that epoch become its history."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        src = Path(folder) / "checkpoint.pt"
        epoch = ck.load_checkpoint(src)["epoch"]
        mark = Path(folder) / TRIAL_FILE
        donor = mark.read_text() if mark.exists() else ""
        local = ck.numbered(run_dir)
        if donor and donor != run_dir.name:
            adopt_donor(run_dir, donor, epoch, exp_dir)
        elif local and int(ck.CKPT_RE.search(local[-1].name).group(1)) >= epoch:
            return  # same storage, same run: its own newest checkpoint is at least as far along
        dst = ck.checkpoint_path(run_dir, epoch)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst.with_suffix(".tmp"))
        dst.with_suffix(".tmp").replace(dst)


def adopt_donor(run_dir: Path, donor: str, epoch: int, exp_dir: str) -> None:
    """Replace a trial's own checkpoints and log by the donor trial's, up to `epoch`."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    theirs = Path(exp_dir) / donor / "log.jsonl" if exp_dir else None
    rows = []
    if theirs is not None and theirs.is_file():
        for line in theirs.read_text().splitlines():
            try:
                if json.loads(line).get("epoch", 0) <= epoch:
                    rows.append(line)
            except ValueError:
                pass  # the donor is writing its next row
    rows.append(json.dumps({"kind": "exploit", "epoch": epoch, "donor": donor}))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_text("".join(r + "\n" for r in rows), run_dir / "log.jsonl", "run log")
    print(f"trial {run_dir.name}: exploit, going on from trial {donor}'s epoch {epoch}", flush=True)


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
        restore_checkpoint(tune.get_checkpoint(), run_dir, exp_dir)
        train(cfg, run_dir, make_report(cfg.metric, mode))
    except GanError as e:
        # a user error (e.g. a searched batch_size above the dataset size): the same config
        # fails the same way on every retry, and a raised error prints Ray's traceback. The trial
        # ends with the message as its last result (no epoch: ASHA skips it); trials.csv shows
        # it as failed, with this message in its error column
        worst = DIVERGED if mode == "min" else -DIVERGED
        tune.report({config.get("metric", "fid"): worst, USER_ERROR: str(e)})


class LostCheckpoints(tune.Callback):
    """Mends what a driver killed -9 at the wrong moment leaves behind. Ray registers a trial's
    new checkpoint and deletes the one it replaces before it saves the experiment state; a driver
    killed in between leaves a state that names the deleted checkpoint. Restored as it is, the
    trial fails on every rerun ("does not exist on storage anymore"), and the next checkpoint
    would fail the driver when it tries to delete the lost one again. On the first step of a
    driver, every trial forgets the checkpoints no longer on storage; one whose latest is gone
    resumes from the newest checkpoint left in its folder (or, with none, from its run dir's)."""

    def __init__(self) -> None:
        self.mended = False

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if not self.mended:
            self.mended = True
            for trial in trials:
                forget_lost_checkpoints(trial.run_metadata.checkpoint_manager, trial.trial_id)


CKPT_DIR_RE = re.compile(r"checkpoint_(\d+)$")


def forget_lost_checkpoints(manager, name: str) -> None:
    """Drop a Ray checkpoint manager's entries whose folder is gone (Ray's private state: the
    pinned Ray version's; tests/test_tune.py kills a driver and loses a checkpoint to check it)."""

    def exists(result) -> bool:
        ckpt = result.checkpoint
        return ckpt.filesystem.get_file_info(ckpt.path).type != pyarrow.fs.FileType.NotFound

    manager._checkpoint_results = [r for r in manager._checkpoint_results if exists(r)]
    latest = manager._latest_checkpoint_result
    if latest is None or exists(latest):
        return
    lost = latest.checkpoint
    folder = posixpath.dirname(lost.path.rstrip("/"))
    found = lost.filesystem.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    numbered = sorted(
        (int(m.group(1)), f.path)
        for f in found
        if f.type == pyarrow.fs.FileType.Directory and (m := CKPT_DIR_RE.search(f.base_name))
    )
    if numbered:  # the one Ray registered just before the driver died
        where = numbered[-1][1]
        newest = tune.Checkpoint(where, filesystem=lost.filesystem)
        # with the lost one's metrics (the state has no others): the trial reads its epoch from
        # the checkpoint itself, and its next report replaces them
        manager._latest_checkpoint_result = _TrainingResult(newest, latest.metrics)
    else:
        where = "its run dir's own checkpoints"
        manager._latest_checkpoint_result = None  # starts afresh, resuming from its run dir
    print(f"trial {name}: checkpoint {lost.path} is gone; resuming from {where}", flush=True)


def trial_dirname(trial) -> str:
    """Short, stable trial directory names: the trial id."""
    return trial.trial_id
