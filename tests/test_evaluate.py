"""`gan evaluate` on tiny real runs: every field written, one table for several runs."""

import argparse
import json
import shutil

import pytest

from gan.cli import main
from gan.config import GanError
from gan.evaluate import PROTOCOLS, eval_config, find_runs
from gan.train import train


@pytest.fixture
def tiny_run(fid_cfg, tmp_path):
    """A 1-epoch run on a 256-image slice (its data_dir is the shared test cache)."""
    cfg = fid_cfg()
    train(cfg, tmp_path / "exp" / "run_a")
    return tmp_path / "exp" / "run_a", cfg


def test_evaluate_writes_every_field(tiny_run, inception_weights, capsys):
    run, cfg = tiny_run
    args = [
        "evaluate",
        str(run),
        "--samples",
        "16",
        "--kid",
        "--fid-weights",
        str(inception_weights),
    ]
    assert main(args) == 0
    out = json.loads((run / "evaluation.json").read_text())
    fields = {"fid", "fid_weights", "fid_standard", "fid_label", "fid_ref", "kid_mean", "kid_std"}
    fields |= {"fd_domain", "class_coverage_min", "class_entropy", "classifier_acc"}
    fields |= {"diversity", "d_acc_real", "d_acc_fake", "grid", "epoch", "checkpoint"}
    assert fields <= set(out)
    assert out["fid_standard"] is False and out["fid_label"].startswith("FID* (non-standard")
    assert out["samples"] == 16 and out["fid_ref"] == "test:16"
    assert 0.0 <= out["d_acc_real"] <= 1.0 and 0.0 <= out["d_acc_fake"] <= 1.0
    assert (run / "evaluation.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "run_a" in table and "non-standard weights" in table


def test_evaluate_experiment_dir_gives_one_table(tiny_run, capsys):
    run, cfg = tiny_run
    # a Ray Tune trial dir keeps its checkpoints as checkpoint_NNNNNN/checkpoint.pt
    trial = run.parent / "trial_b" / "checkpoint_000001"
    trial.mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "ckpt_000001.pt", trial / "checkpoint.pt")
    assert len(find_runs([str(run.parent)])) == 2
    # fd_domain alone: no Inception, so this works offline with no weights at all
    assert main(["evaluate", str(run.parent), "--metric", "fd_domain", "--samples", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert "fd_domain" in lines[header] and "FID" not in lines[header]
    assert {lines[header + 1].split()[0], lines[header + 2].split()[0]} == {"run_a", "trial_b"}
    summary = json.loads((run.parent / "evaluation_summary.json").read_text())
    assert len(summary) == 2 and all("fd_domain" in r for r in summary)


def test_evaluate_errors_are_clear(tiny_run, tmp_path, capsys):
    run, cfg = tiny_run
    assert main(["evaluate", str(run), "--fid-weights", str(tmp_path / "missing.pt")]) == 2
    assert "GAN_FID_WEIGHTS" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty)]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_fmnist_10k_protocol(tiny):
    args = argparse.Namespace(
        metric="fd_domain",
        kid=False,
        prc=False,
        protocol="fmnist-10k",
        samples=None,
        fid_weights=None,
        data_dir=None,
    )
    cfg = eval_config(tiny(), args)
    assert (cfg.fid_samples, cfg.fid_ref_split, cfg.metric) == (10000, "test", "fid")
    assert "21.5" in PROTOCOLS["fmnist-10k"]["published"]
    with pytest.raises(GanError, match="fashion_mnist"):
        eval_config(tiny(dataset="mnist"), args)


def test_set_overrides_the_runs_config_and_the_flags(tiny):
    args = argparse.Namespace(
        metric="fid",
        kid=False,
        prc=False,
        protocol=None,
        samples=500,
        fid_weights=None,
        data_dir=None,
        set=["fid_samples=123", "fid_ref_split=test", "metric=fd_domain"],
    )
    cfg = eval_config(tiny(), args)
    assert (cfg.fid_samples, cfg.fid_ref_split, cfg.metric) == (123, "test", "fd_domain")
    args.set = ["fid_sampels=1"]
    with pytest.raises(GanError, match="fid_sampels"):
        eval_config(tiny(), args)


def test_every_subcommand_has_one_device_default():
    from gan.cli import build_parser

    parser = build_parser()
    for argv in (["evaluate", "r"], ["generate", "r"], ["serve", "r"]):
        assert parser.parse_args(argv).device == "auto"
