"""The winner of a tune experiment: `<experiment>/best.yaml` read back into a Config (no Ray)."""

from __future__ import annotations

from pathlib import Path

from gan.config import Config, GanError, make_config, parse_overrides, read_yaml, to_dict

RESULTS = Path("results")  # the tune job's default storage path
# the final retrain: the seeds' 1000 epochs, scored, sampled and checkpointed at a pace that suits
# them (a tune config's every-epoch FID would make Inception dominate a 1000-epoch run)
FINAL = {"epochs": 1000, "eval_every": 50, "sample_every": 10, "checkpoint_every": 10}
HOW = "run a tune first (gan tune tune_configs/quick.yaml) or pass --from DIR"


def find_experiment(results: str | Path = RESULTS) -> Path:
    """The experiment under `results` whose best.yaml was written last."""
    results = Path(results)
    found = sorted(results.glob("*/best.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise GanError(f"no tune experiment with a best.yaml under {results.resolve()}; {HOW}")
    return found[-1].parent


def best_config(from_dir: str | Path | None = None, results: str | Path = RESULTS) -> Config:
    """The complete winning Config of an experiment dir (or best.yaml); default: the newest one."""
    if from_dir is not None and "://" in str(from_dir):
        raise GanError(
            f"--from {from_dir}: copy the experiment's best.yaml locally and pass its path"
        )
    path = find_experiment(results) / "best.yaml" if from_dir is None else Path(from_dir)
    if path.is_dir():
        path = path / "best.yaml"
    if not path.is_file():
        raise GanError(
            f"{path} does not exist: the experiment has not finished or is not a tune "
            f"experiment; {HOW}"
        )
    return make_config(read_yaml(path))


def scale_schedule(values: dict, epochs: int) -> tuple[dict, str | None]:
    """The winner's values for a run of `epochs`: a per-epoch lr_decay becomes the lr_end it
    reached over the winner's own epochs, so that the retrain decays the same way over its whole
    run instead of stopping after a few dozen epochs. Returns (values, what changed or None)."""
    decay, searched = values.get("lr_decay", 1.0), values.get("epochs", epochs)
    if decay >= 1.0 or epochs == searched:
        return values, None
    lr_end, early = decay**searched, min(epochs, 30)
    note = (
        f"lr_decay {decay:g} per epoch over the winner's {searched} epochs becomes "
        f"lr_end {lr_end:.4g} over {epochs} epochs (kept as is, the learning rate would be "
        f"{decay**early:.2g}x at epoch {early} and {decay**epochs:.2g}x at the end)"
    )
    return {**values, "lr_decay": 1.0, "lr_end": lr_end}, note


def final_values(from_dir: str | Path | None = None, overrides=()) -> tuple[dict, str | None]:
    """The final retrain's config values: the winner, then FINAL (its schedule rescaled to the
    longer run), then the user's overrides; and what the rescaling changed, to be printed."""
    user = parse_overrides(list(overrides))
    winner = to_dict(best_config(from_dir))
    values = {**winner, **FINAL}
    values["epochs"] = winner["epochs"]  # scale_schedule reads the winner's run length
    note = None
    if "lr_decay" not in user and "lr_end" not in user:
        epochs = user.get("epochs", FINAL["epochs"])  # a bad value fails in make_config
        if isinstance(epochs, int) and epochs > 0:
            values, note = scale_schedule(values, epochs)
    values["epochs"] = FINAL["epochs"]
    values.update(user)
    return values, note
