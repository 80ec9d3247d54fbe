"""Schedules that keep their shape at any run length: lr_end, ema_horizon, and the final
retrain's conversion of a tune winner's per-epoch decay."""

import json
import warnings

import pytest
import torch
import yaml

from gan.best import final_values
from gan.checkpoint import TrainState, load_checkpoint
from gan.config import GanError, make_config
from gan.steps import ema_beta
from gan.train import train


def _lr_by_epoch(cfg) -> dict[int, float]:
    """The learning rate of G during each epoch 1..epochs, as the run's scheduler sets it."""
    state = TrainState.build(cfg, 0, [], torch.device("cpu"))
    lrs = {}
    for epoch in range(1, cfg.epochs + 1):
        lrs[epoch] = state.opt_g.param_groups[0]["lr"] / cfg.lr_g
        with warnings.catch_warnings():  # "step() before optimizer.step()": no training here
            warnings.simplefilter("ignore")
            state.sched_g.step()  # train() steps it after each epoch
    return lrs


def _winner(tmp_path, **values) -> str:
    """A tune experiment dir whose best.yaml is a 10-epoch winner with a per-epoch decay."""
    exp = tmp_path / "exp"
    exp.mkdir(parents=True)
    best = {"epochs": 10, "lr_decay": 0.85, "width": 8, "latent_dim": 16, **values}
    (exp / "best.yaml").write_text(yaml.safe_dump(best))
    return str(exp)


def test_a_1000_epoch_retrain_of_a_10_epoch_winner_keeps_learning(tmp_path):
    values, note = final_values(_winner(tmp_path))
    cfg = make_config(values)
    assert cfg.epochs == 1000 and cfg.lr_decay == 1.0
    assert cfg.lr_end == pytest.approx(0.85**10)  # the decay the winner had over its own run
    assert "lr_decay 0.85" in note and "lr_end 0.1969" in note
    lrs = _lr_by_epoch(cfg)
    assert lrs[1] == pytest.approx(1.0)
    assert lrs[500] == pytest.approx(0.85 ** (10 * 499 / 1000))  # 0.44
    assert lrs[1000] == pytest.approx(0.85 ** (10 * 999 / 1000))  # 0.197: where the winner ended
    assert min(lrs[e] for e in range(1, 501)) > 0.1  # above 10% for the whole first half
    # as inherited before, the per-epoch form is 1e-71 x at the end: gone after a few dozen epochs
    old = _lr_by_epoch(make_config({**values, "lr_end": 1.0, "lr_decay": 0.85}))
    assert old[30] < 0.01 and old[1000] < 1e-60


def test_a_winner_in_the_run_length_form_is_kept_and_overrides_win(tmp_path):
    values, note = final_values(_winner(tmp_path, lr_decay=1.0, lr_end=0.2))
    assert note is None and values["lr_end"] == 0.2 and values["epochs"] == 1000
    values, note = final_values(_winner(tmp_path / "b"), ["lr_decay=0.999"])  # the user's word
    assert note is None and values["lr_decay"] == 0.999 and values["lr_end"] == 1.0
    values, note = final_values(_winner(tmp_path / "c"), ["epochs=10"])  # same length: no change
    assert note is None and values["lr_decay"] == 0.85


def test_lr_end_has_the_same_shape_at_any_run_length():
    short = _lr_by_epoch(make_config({"epochs": 10, "lr_end": 0.1}))
    long = _lr_by_epoch(make_config({"epochs": 1000, "lr_end": 0.1}))
    for k in range(10):  # after the same share of either run, the same learning rate
        assert short[k + 1] == pytest.approx(long[100 * k + 1]) == pytest.approx(0.1 ** (k / 10))
    assert long[1000] == pytest.approx(0.1 ** (999 / 1000))


def test_both_decays_at_once_are_refused():
    with pytest.raises(GanError, match="'lr_decay'.*'lr_end'.*set lr_decay=1.0"):
        make_config({"lr_decay": 0.9, "lr_end": 0.1})
    with pytest.raises(GanError, match="'lr_end': must be in"):
        make_config({"lr_end": 0.0})


def test_ema_horizon_is_a_share_of_the_run():
    cfg = make_config({"ema_horizon": 0.01, "ema_rampup": 0.0})
    for total in (1_000, 100_000):  # a half-life of 1% of the run's G steps at either length
        beta = ema_beta(cfg, total // 2, total)
        assert beta ** (0.01 * total) == pytest.approx(0.5)
    ramped = make_config({"ema_horizon": 0.01, "ema_rampup": 0.05, "ema_decay": 0.0})
    assert ema_beta(ramped, 10, 100_000) < ema_beta(ramped, 100_000, 100_000)  # ramp early on
    state = TrainState.build(ramped, 0, [], torch.device("cpu"))
    assert state.G_ema is not None  # ema_horizon alone turns the EMA on


def test_an_old_checkpoint_resumes_exactly(tmp_path, tiny):
    """A run saved before lr_end and ema_horizon existed (its config lacks them) resumes bit for
    bit as it would have, per-epoch decay included."""
    extra = dict(lr_decay=0.9, ema_rampup=0.05)
    train(tiny(epochs=3, **extra), tmp_path / "straight")
    old = tmp_path / "old"
    train(tiny(epochs=2, **extra), old)
    for path in (old / "checkpoints").glob("ckpt_*.pt"):  # what the older version wrote
        state = load_checkpoint(path)
        for key in ("lr_end", "ema_horizon"):
            del state["config"][key]
        torch.save(state, path)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    del saved["lr_end"], saved["ema_horizon"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert train(tiny(epochs=3, **extra), old)["epoch"] == 3
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "ckpt_000003.pt")
    b = load_checkpoint(old / "checkpoints" / "ckpt_000003.pt")
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert a["opt_g"]["param_groups"][0]["lr"] == b["opt_g"]["param_groups"][0]["lr"]


def test_extending_an_lr_end_run_respreads_its_decay(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny(epochs=2, lr_end=0.25), run)
    train(tiny(epochs=4, lr_end=0.25), run)  # the same decay, now over 4 epochs
    state = load_checkpoint(run / "checkpoints" / "ckpt_000004.pt")
    lr = state["opt_g"]["param_groups"][0]["lr"] / 2e-4
    assert lr == pytest.approx(0.25)  # after 4 of 4 epochs: lr_end, as a 4-epoch run would end
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "retune" and r["epochs"] == [2, 4] for r in rows)
