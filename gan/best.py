"""The winner of a tune experiment: `<experiment>/best.yaml` read back into a Config (no Ray)."""

from __future__ import annotations

from pathlib import Path

from gan.config import Config, GanError, make_config, parse_overrides, read_yaml, to_dict

RESULTS = Path("results")  # the tune job's default storage path
# the final retrain: the seeds' 1000 epochs, scored, sampled and checkpointed at a pace that suits
# them (a tune config's every-epoch FID would make Inception dominate a 1000-epoch run)
FINAL = {"epochs": 1000, "eval_every": 50, "sample_every": 10, "checkpoint_every": 10}
HOW = "run a tune first (python jobs/tune.py tune_configs/quick.yaml) or pass --from DIR"


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


def final_values(from_dir: str | Path | None = None, overrides=()) -> dict:
    """The final retrain's config values: the winner, then FINAL, then the user's overrides."""
    values = {**to_dict(best_config(from_dir)), **FINAL}
    values.update(parse_overrides(list(overrides)))
    return values
