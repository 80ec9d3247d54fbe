"""How a tune explores: searchers (random, grid, Optuna), PBT's and PB2's exploits on gan's
checkpoints, seed re-evaluation ranked by the mean, and the MLflow and W&B loggers."""

import csv
import json
import math
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from gan.checkpoint import load_checkpoint
from gan.config import GanError
from gan.train import train
from jobs.tune_spec import parse_spec

LR = {"lr_g": {"loguniform": [1.0e-4, 1.0e-2]}}


def spec_of(**top):
    return parse_spec({"base": {"eval_every": 1, "epochs": 3}, **top}, "exp")


@pytest.mark.parametrize(
    "top, key",
    [
        ({"searcher": "bayes"}, "'searcher'"),
        ({"searcher": "grid", "search": LR}, "'lr_g' is a range"),
        ({"searcher": "optuna", "search": {"arch": {"grid_search": ["dcgan"]}}}, "'arch'"),
        ({"searcher": "optuna", "scheduler": {"type": "pbt"}, "search": LR}, "pbt"),
        ({"scheduler": {"type": "pbt"}, "search": {"arch": {"choice": ["dcgan"]}}}, "lr_g"),
        ({"scheduler": {"type": "pbt", "grace_period": 1}, "search": LR}, "grace_period"),
        ({"scheduler": {"type": "pbt", "quantile_fraction": 0.9}, "search": LR}, "quantile"),
        ({"scheduler": {"type": "pbt", "resample_probability": 2}, "search": LR}, "resample"),
        ({"reevaluate": {"top": 0}}, "'top'"),
        ({"reevaluate": {"best": 2}}, "'reevaluate'"),
        ({"reevaluate": {"top": 2}, "scheduler": {"type": "pbt"}, "search": LR}, "reevaluate"),
        ({"loggers": ["comet"]}, "'loggers'"),
        ({"searcher": "optuna", "scheduler": {"type": "pb2"}, "search": LR}, "pb2"),
        ({"scheduler": {"type": "pb2", "resample_probability": 0.2}, "search": LR}, "resample"),
        ({"scheduler": {"type": "pb2"}, "search": {"arch": {"choice": ["dcgan"]}}}, "lr_g"),
        ({"reevaluate": {"top": 2}, "scheduler": {"type": "pb2"}, "search": LR}, "reevaluate"),
        (
            {"scheduler": {"type": "pbt"}, "search": LR, "num_samples": 4, "max_concurrent": 2},
            "'max_concurrent': 2 with scheduler pbt and 4 trials",
        ),
        (
            {
                "scheduler": {"type": "pb2"},
                "search": {**LR, "arch": {"grid_search": ["dcgan", "resnet"]}},
                "num_samples": 2,
                "max_concurrent": 3,
            },
            "'max_concurrent': 3 with scheduler pb2 and 4 trials",
        ),
    ],
)
def test_search_key_errors_name_the_key(top, key):
    with pytest.raises(GanError, match=key):
        spec_of(**top)


def test_pbt_interval_must_meet_an_evaluation():
    data = {"base": {"eval_every": 2, "epochs": 4}, "search": LR}
    with pytest.raises(GanError, match="'perturbation_interval'"):
        parse_spec({**data, "scheduler": {"type": "pbt", "perturbation_interval": 3}}, "x")
    spec = parse_spec({**data, "scheduler": {"type": "pbt"}}, "x")
    assert spec.scheduler["perturbation_interval"] == 2 and spec.scheduler["mutate"] == ["lr_g"]


def test_a_missing_optional_package_is_named_with_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: None if n in ("optuna", "mlflow", "wandb", "sklearn") else real(n),
    )
    with pytest.raises(GanError, match=r"pip install 'gan\[optuna\]'"):
        spec_of(searcher="optuna", search=LR)
    with pytest.raises(GanError, match=r"pip install 'gan\[mlflow\]'"):
        spec_of(loggers=["mlflow"])
    with pytest.raises(GanError, match=r"logger wandb needs .* pip install 'gan\[wandb\]'"):
        spec_of(loggers=["wandb"])
    with pytest.raises(GanError, match=r"type 'pb2' needs .* pip install 'gan\[pb2\]'"):
        spec_of(scheduler={"type": "pb2"}, search=LR)


def test_grid_searcher_lists_every_combination():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from jobs.search import make_search_alg

    spec = spec_of(
        searcher="grid",
        search={"loss": {"choice": ["bce", "hinge"]}, "lr_g": {"grid_search": [1e-4, 2e-4, 3e-4]}},
    )
    assert spec.search["loss"] == {"grid_search": ["bce", "hinge"]}
    assert isinstance(make_search_alg(spec), BasicVariantGenerator)


def _optuna_run(seed: int, trials: int = 6) -> list[dict]:
    """The configs Optuna proposes for an objective that depends on them, one trial at a time."""
    from jobs.search import make_search_alg

    spec = spec_of(
        searcher="optuna",
        seed=seed,
        num_samples=trials,
        search={**LR, "loss": {"choice": ["bce", "hinge"]}, "width": {"randint": [8, 33]}},
    )
    alg = make_search_alg(spec)
    alg.set_search_properties(spec.metric, spec.mode, spec.param_space())
    seen = []
    for i in range(trials):
        config = alg.suggest(f"t{i}")
        seen.append({k: config[k] for k in ("lr_g", "loss", "width")})
        score = abs(math.log10(config["lr_g"]) + 3) + config["width"] / 32
        alg.on_trial_complete(f"t{i}", {spec.metric: score})
    return seen


def test_optuna_search_is_reproducible_with_its_seed():
    a, b, c = _optuna_run(0), _optuna_run(0), _optuna_run(1)
    assert a == b  # the same seed proposes the same configs
    assert a != c
    assert all(1e-4 <= x["lr_g"] <= 1e-2 and 8 <= x["width"] < 33 for x in a)


def test_optuna_holds_max_concurrent():
    from ray.tune.search import ConcurrencyLimiter

    from jobs.search import make_search_alg

    alg = make_search_alg(spec_of(searcher="optuna", search=LR, max_concurrent=2))
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 2
    spec = spec_of(searcher="optuna", search=LR, max_concurrent=2)
    alg.set_search_properties(spec.metric, spec.mode, spec.param_space())
    assert alg.suggest("a") and alg.suggest("b")
    assert alg.suggest("c") is None  # a third waits until one of the two completes
    alg.on_trial_complete("a", {spec.metric: 1.0})
    assert alg.suggest("c")


def test_pbt_explore_stays_inside_the_search_range():
    from jobs.search import clip_to_domains, make_scheduler

    spec = spec_of(
        scheduler={"type": "pbt"},
        search={"beta1": {"uniform": [0.0, 0.9]}, **LR, "arch": {"choice": ["dcgan"]}},
    )
    pbt = make_scheduler(spec)
    assert set(pbt._hyperparam_mutations) == {"beta1", "lr_g"}  # arch is not retunable
    clip = clip_to_domains({k: spec.search[k] for k in ("beta1", "lr_g")})
    assert clip({"beta1": 1.08, "lr_g": 5e-5}) == {"beta1": 0.9, "lr_g": 1e-4}


def test_pb2_searches_within_the_ranges_of_the_searched_keys():
    from ray.tune.schedulers.pb2 import PB2

    from jobs.search import make_scheduler

    spec = spec_of(
        scheduler={"type": "pb2", "perturbation_interval": 1},
        search={**LR, "lr_d": {"choice": [1e-4, 4e-4, 2e-4]}, "loss": {"choice": ["bce"]}},
    )
    assert "resample_probability" not in spec.scheduler
    pb2 = make_scheduler(spec)
    assert isinstance(pb2, PB2)  # loss is not retunable; a numeric choice spans its values
    assert pb2._hyperparam_bounds == {"lr_g": [1e-4, 1e-2], "lr_d": [1e-4, 4e-4]}


# -- a PBT exploit on gan's checkpoints (no Ray session) -----------------------------------------


def _weights(path):
    state = load_checkpoint(path)
    return {f"{p}.{k}": v for p in ("G", "D", "G_ema") for k, v in state[p].items()}


def test_resuming_under_new_learning_rates_goes_on_with_them(tmp_path, tiny):
    train(tiny(epochs=1, lr_decay=0.9), tmp_path / "run")
    train(tiny(epochs=2, lr_decay=0.9, lr_g=1e-3, beta1=0.0), tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    retune = [r for r in rows if r["kind"] == "retune"]
    assert retune == [{"kind": "retune", "epoch": 1, "lr_g": [2e-4, 1e-3], "beta1": [0.5, 0.0]}]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_000002.pt")
    group = state["opt_g"]["param_groups"][0]
    assert group["lr"] == pytest.approx(1e-3 * 0.9**2) and group["betas"] == (0.0, 0.999)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.9**2)
    assert state["opt_g"]["state"]  # Adam's moments were kept, not reset
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


def test_a_pbt_exploit_continues_the_donors_checkpoint_with_the_mutated_rate(tmp_path, tiny):
    from ray import tune

    from jobs.trial import TRIAL_FILE, restore_checkpoint

    exp = tmp_path / "exp"
    train(tiny(epochs=2), exp / "donor")  # the donor trial, at its epoch-2 report
    train(tiny(epochs=1, seed=7), exp / "weak")  # the trial that exploits it
    reported = tmp_path / "reported"  # what the donor's report handed to Ray
    reported.mkdir()
    shutil.copyfile(exp / "donor" / "checkpoints" / "ckpt_000002.pt", reported / "checkpoint.pt")
    (reported / TRIAL_FILE).write_text("donor")
    restore_checkpoint(tune.Checkpoint.from_directory(str(reported)), exp / "weak", str(exp))
    # PBT's new config: the donor's, with lr_g mutated
    train(tiny(epochs=3, lr_g=5e-4), exp / "weak")
    # the same step done by hand: the donor's epoch-2 checkpoint resumed under lr_g 5e-4
    shutil.copytree(exp / "donor" / "checkpoints", tmp_path / "by_hand" / "checkpoints")
    (tmp_path / "by_hand" / "checkpoints" / "ckpt_000001.pt").unlink()
    train(tiny(epochs=3, lr_g=5e-4), tmp_path / "by_hand")
    a = _weights(exp / "weak" / "checkpoints" / "ckpt_000003.pt")
    b = _weights(tmp_path / "by_hand" / "checkpoints" / "ckpt_000003.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # exactly the donor's run, resumed
    log = [json.loads(x) for x in (exp / "weak" / "log.jsonl").read_text().splitlines()]
    donor_log = (exp / "donor" / "log.jsonl").read_text().splitlines()
    assert [json.dumps(r) for r in log[: len(donor_log)]] == donor_log  # the donor's history
    kinds = [(r["kind"], r["epoch"]) for r in log[len(donor_log) :]]
    assert kinds[:2] == [("exploit", 2), ("retune", 2)] and ("epoch", 3) in kinds
    assert log[len(donor_log)]["donor"] == "donor"
    assert not (exp / "weak" / "checkpoints" / "ckpt_000001.pt").exists()  # its own line is gone
    lr = load_checkpoint(exp / "weak" / "checkpoints" / "ckpt_000003.pt")["opt_g"]
    assert lr["param_groups"][0]["lr"] == 5e-4


def test_a_finished_run_resumed_reports_its_last_evaluation_again(tmp_path, tiny):
    """A tune driver stopped while a trial went on to its last epoch restores that trial from
    an older checkpoint; the trial, already done, must still tell the tuner how it ended."""
    scored = dict(eval_every=1, metric="fd_domain", fid_samples=64)
    first, again = [], []
    train(tiny(epochs=2, **scored), tmp_path / "run", lambda m, c: first.append(m))
    train(tiny(epochs=2, **scored), tmp_path / "run", lambda m, c: again.append((m, c)))
    assert [m["epoch"] for m in first] == [1, 2]
    assert len(again) == 1 and again[0][0] == first[-1]  # the same metrics, once
    train(tiny(epochs=2), tmp_path / "run")  # no report callable: nothing to tell


# -- seed re-evaluation ---------------------------------------------------------------------------


def test_reevaluation_ranks_by_the_mean():
    from jobs.reevaluate import rank_by_mean
    from jobs.tune_report import MEAN, SEEDS, STD

    spec = SimpleNamespace(metric="fd_domain", mode="min")
    rows = [  # the search's order: a lucky first seed for "a"
        {"trial": "a", "fd_domain": 5.0},
        {"trial": "b", "fd_domain": 6.0},
        {"trial": "c", "fd_domain": 7.0},
        {"trial": "d", "fd_domain": 9.0},
    ]
    scores = {"a": [9.0, 11.0, 10.0], "b": [7.0, 6.5, 7.5], "c": [6.0, 8.0, math.nan]}
    ranked = rank_by_mean(rows, scores, spec)
    assert [r["trial"] for r in ranked] == ["b", "a", "c", "d"]
    assert ranked[0][MEAN] == pytest.approx(7.0) and ranked[0][STD] == pytest.approx(0.5)
    assert ranked[0][SEEDS] == 3 and ranked[2][MEAN] == math.inf  # a failed seed: the worst
    assert math.isnan(ranked[3][MEAN]) and ranked[3][SEEDS] == 0  # not re-evaluated


@pytest.fixture
def search_base(tune_base):
    """The Ray tests' tiny trials (tests/fixtures_ray.py), scored on fewer samples."""
    return {**tune_base, "epochs": 2, "fid_samples": 128}


def _spec(path: Path, base: dict, **top) -> Path:
    spec = {"name": path.stem, "base": base, "resources": {"cpu": 1}, "seed": 0, **top}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.ray
def test_reevaluation_retrains_the_best_with_new_seeds(
    tmp_path, search_base, ray_session, monkeypatch
):
    from gan.best import best_config
    from jobs.tune import run_tune

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    spec = _spec(
        tmp_path / "seeds.yaml",
        {**search_base, "epochs": 1},
        search={"lr_g": {"grid_search": [1.0e-4, 2.0e-3, 1.0e-2]}},
        scheduler={"type": "fifo"},
        reevaluate={"top": 2, "seeds": 2},
        loggers=["mlflow"],
    )
    rows = run_tune(str(spec), storage=str(tmp_path))
    exp = tmp_path / "seeds"
    seeds = _csv(exp / "reevaluate" / "seeds.csv")
    assert len(seeds) == 4 and {r["seed"] for r in seeds} == {"1", "2"}  # new seeds, not 0
    for trial in {r["trial"] for r in seeds}:  # each candidate ran under each new seed once
        assert sorted(r["seed"] for r in seeds if r["trial"] == trial) == ["1", "2"]
    means = {}
    for r in seeds:
        means.setdefault(r["trial"], []).append(float(r["fd_domain"]))
    table = _csv(exp / "trials.csv")
    assert [r["trial"] for r in table[:2]] == sorted(means, key=lambda t: sum(means[t]))
    for r in table[:2]:
        assert float(r["seeds_mean"]) == pytest.approx(sum(means[r["trial"]]) / 2)
        assert r["seeds"] == "2" and float(r["seeds_std"]) >= 0
    assert table[2]["seeds"] == "0"  # the third was not re-evaluated
    assert rows[0]["trial"] == table[0]["trial"]
    best = best_config(exp)  # what `gan train --best` retrains: the best by mean
    assert best.lr_g == float(table[0]["lr_g"]) and best.seed == 0
    assert "ranked by the mean over 2 new seeds" in (exp / "best.yaml").read_text()
    from mlflow.tracking import MlflowClient  # the re-evaluation's runs are logged as well

    client = MlflowClient(f"sqlite:///{exp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("seeds").experiment_id])
    assert len(runs) == 3 + 2 * 2
    # MLflow exported this experiment's store while it ran: a later experiment of the process
    # would have logged into it (the PBT test did, after this one)
    assert "MLFLOW_TRACKING_URI" not in os.environ


def _histories(exp: Path, rows: list[dict]) -> list[list[dict]]:
    """Each trial's log.jsonl rows, checked to read as one history to epoch 3."""
    logs = []
    for r in rows:
        log = [json.loads(x) for x in (exp / r["trial"] / "log.jsonl").read_text().splitlines()]
        epochs = [x["epoch"] for x in log if x["kind"] == "epoch"]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 3  # one history per trial
        logs.append(log)
    return logs


@pytest.mark.ray
def test_pbt_exploits_go_on_from_the_donor_and_mlflow_and_wandb_log_every_trial(
    tmp_path, search_base, ray_session, monkeypatch, capsys
):
    from jobs.tune import run_tune

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored W&B login: the runs go offline

    spec = _spec(
        tmp_path / "pbt.yaml",
        {**search_base, "epochs": 3},
        search={"lr_g": {"choice": [1.0e-5, 2.0e-3]}, "lr_d": {"choice": [1.0e-5, 2.0e-3]}},
        num_samples=2,
        max_concurrent=2,
        resources={"cpu": 1},
        # quantile 0.5 of 2 trials: at each interval the worse one exploits the better one
        scheduler={"type": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5},
        loggers=["mlflow", "wandb"],
    )
    rows = run_tune(str(spec), storage=str(tmp_path))
    exp = tmp_path / "pbt"
    assert f"logged offline to {exp}/wandb" in capsys.readouterr().out
    assert len(rows) == 2 and (exp / "best.yaml").is_file()
    exploits = [x for log in _histories(exp, rows) for x in log if x["kind"] == "exploit"]
    assert exploits  # at least one exploit happened, and it named its donor
    assert {x["donor"] for x in exploits} <= {r["trial"] for r in rows}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{exp}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("pbt").experiment_id])
    assert len(runs) == 2 and all("fd_domain" in run.data.metrics for run in runs)
    # one offline W&B run per trial, each with history records of the metric (the run file's
    # records are protobufs: a history item's key is the field b"\x12" + length + name)
    offline = sorted((exp / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 2
    assert all(f.read_bytes().count(b"\x12\tfd_domain") >= 3 for f in offline)


@pytest.mark.ray
def test_pb2_exploits_with_values_its_bandit_picks_within_the_ranges(
    tmp_path, search_base, ray_session
):
    from jobs.tune import run_tune

    bounds = [1.0e-5, 2.0e-3]
    spec = _spec(
        tmp_path / "pb2.yaml",
        {**search_base, "epochs": 3},
        search={"lr_g": {"loguniform": bounds}, "lr_d": {"loguniform": bounds}},
        num_samples=2,
        max_concurrent=2,
        resources={"cpu": 1},
        # quantile 0.5 of 2 trials: at each interval the worse one exploits the better one
        scheduler={"type": "pb2", "perturbation_interval": 1, "quantile_fraction": 0.5},
    )
    rows = run_tune(str(spec), storage=str(tmp_path))
    exp = tmp_path / "pb2"
    assert len(rows) == 2 and (exp / "best.yaml").is_file()
    retunes = []
    for log in _histories(exp, rows):
        kinds = [x["kind"] for x in log]
        for i, kind in enumerate(kinds):
            if kind == "exploit":  # the donor's checkpoint, then the bandit's new values
                assert kinds[i + 1] == "retune" and log[i]["donor"] in {x["trial"] for x in rows}
                retunes.append(log[i + 1])
    assert retunes  # at least one exploit happened
    for row in retunes:
        for key in set(row) & {"lr_g", "lr_d"}:
            assert bounds[0] <= row[key][1] <= bounds[1]


@pytest.mark.ray
def test_an_interrupted_optuna_search_resumes_with_the_same_command(
    tmp_path, search_base, ray_session
):
    import os
    import signal
    import subprocess
    import time

    spec = _spec(
        tmp_path / "tpe.yaml",
        {**search_base, "epochs": 3},  # long enough for the signal to land mid-experiment
        searcher="optuna",
        search=LR,
        num_samples=3,
        max_concurrent=1,
        scheduler={"type": "fifo"},
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RAY_ADDRESS": ray_session, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    cmd = [sys.executable, "-m", "jobs.tune", str(spec), "--storage", str(tmp_path)]
    exp = tmp_path / "tpe"
    driver = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None:
        if len(list(exp.glob("*/result.json"))) >= 2:  # one trial done, the next one started
            break
        time.sleep(0.5)
    driver.send_signal(signal.SIGTERM)  # as Kubernetes stops a job
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 143, out[-2000:]
    assert "rerun the same command" in out and not (exp / "best.yaml").exists()
    rerun = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming experiment" in rerun.stdout
    table = _csv(exp / "trials.csv")
    assert len(table) == 3 and {r["status"] for r in table} == {"completed"}  # 3 trials in all
    assert len({r["lr_g"] for r in table}) == 3
