"""Training: outputs, exact resume, crash recovery, frozen D, determinism, divergence."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gan import steps
from gan.checkpoint import TrainState, load_checkpoint, numbered
from gan.config import GanError
from gan.models import build_models
from gan.sampling import sample_grid
from gan.steps import g_step
from gan.train import train


def _weights(path):
    state = load_checkpoint(path)
    return {k: v for part in ("G", "D", "G_ema") for k, v in state[part].items()}


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [(r["d_loss"], r["g_loss"]) for r in rows if r["kind"] == "epoch"]


def test_run_writes_everything(tmp_path, tiny):
    cfg = tiny(epochs=2, hflip=True, rotate=10.0, zoom=0.1, label_smoothing=0.1, label_noise=0.05)
    result = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert result["status"] == "completed" and result["epoch"] == 2
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]
    assert [p.name for p in numbered(run)] == ["ckpt_000001.pt", "ckpt_000002.pt"]
    assert list(run.glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    needed = {
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "d_acc_real",
        "d_acc_fake",
        "lr_g",
        "img_per_s",
    }
    assert needed <= set(rows[0])
    state = load_checkpoint(run / "checkpoints" / "ckpt_000002.pt")
    keys = {"G", "D", "G_ema", "opt_g", "opt_d", "sched_g", "sched_d", "epoch", "rng", "config"}
    assert keys <= set(state) and state["epoch"] == 2


def test_same_seed_same_losses(tmp_path, tiny):
    cfg = tiny(epochs=2, d_noise=0.1, d_dropout=0.2)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    train(tiny(epochs=2, d_noise=0.1, d_dropout=0.2, seed=1), tmp_path / "c")
    assert _losses(tmp_path / "a") != _losses(tmp_path / "c")


def test_exact_resume(tmp_path, tiny):
    # augmentation, dropout, input noise, label noise and LR decay all draw on the saved state
    extra = dict(
        hflip=True,
        rotate=10.0,
        d_noise=0.1,
        d_dropout=0.2,
        label_noise=0.1,
        lr_decay=0.9,
        arch="modified",
    )
    train(tiny(epochs=2, **extra), tmp_path / "straight")
    train(tiny(epochs=1, **extra), tmp_path / "resumed")
    result = train(tiny(epochs=2, **extra), tmp_path / "resumed")
    assert result["epoch"] == 2
    a = _weights(tmp_path / "straight" / "checkpoints" / "ckpt_000002.pt")
    b = _weights(tmp_path / "resumed" / "checkpoints" / "ckpt_000002.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_resume_refuses_a_different_model(tmp_path, tiny):
    train(tiny(), tmp_path / "run")
    with pytest.raises(GanError, match="arch"):
        train(tiny(arch="baseline", epochs=2), tmp_path / "run")


def test_truncated_checkpoint_falls_back(tmp_path, tiny, caplog):
    train(tiny(epochs=2), tmp_path / "run")
    latest = tmp_path / "run" / "checkpoints" / "ckpt_000002.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    result = train(tiny(epochs=3), tmp_path / "run")
    assert "falling back" in caplog.text
    assert result["epoch"] == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_000003.pt")["epoch"] == 3


def test_a_killed_checkpoint_write_is_removed_on_resume(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny(epochs=1), run)
    partial = run / "checkpoints" / ".ckpt_000002.pt.tmp99999"  # what kill -9 mid-save leaves
    partial.write_bytes(b"half a checkpoint")
    train(tiny(epochs=2), run)
    assert not partial.exists() and not list((run / "checkpoints").glob(".*"))
    assert len(_losses(run)) == 2 and (run / "checkpoints" / "ckpt_000002.pt").is_file()


def test_kill_9_then_rerun_resumes(tmp_path, tiny):
    run = tmp_path / "run"
    code = (
        "import sys; from gan.config import make_config; from gan.train import train; "
        f"train(make_config({{'data_dir': {str(tmp_path / 'data')!r}, 'limit': 1024, "
        "'batch_size': 32, 'width': 8, 'latent_dim': 16, 'epochs': 50, 'eval_every': -1, "
        f"'device': 'cpu', 'sample_every': 0}}), {str(run)!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.time() + 120
    while len(numbered(run)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = max(load_checkpoint(p)["epoch"] for p in numbered(run))
    assert 2 <= done < 50
    cfg = tiny(limit=1024, epochs=done + 1, sample_every=0)
    result = train(cfg, run)
    assert result["epoch"] == done + 1  # went on from the last checkpoint, not from scratch
    assert len(_losses(run)) >= done + 1


def test_g_step_leaves_d_untouched(tiny):
    torch.manual_seed(0)
    cfg = tiny(arch="modified", d_noise=0.1, d_dropout=0.2)
    G, D = build_models(cfg)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-2)
    d_before = {k: v.clone() for k, v in D.state_dict().items()}
    g_before = {k: v.clone() for k, v in G.state_dict().items()}
    fake = G(torch.randn(8, cfg.latent_dim))
    g_step(G, D, opt_g, fake, None, cfg)
    assert all(torch.equal(d_before[k], v) for k, v in D.state_dict().items())
    assert all(p.grad is None for p in D.parameters())  # frozen: no gradient even computed
    assert all(p.requires_grad for p in D.parameters())  # and unfrozen again for the D step
    assert any(not torch.equal(g_before[k], v) for k, v in G.state_dict().items())


def test_a_conditional_sample_grid_has_one_column_per_class(tiny):
    cfg = tiny(conditional=True)
    G, _ = build_models(cfg, num_classes=10)
    seen = []
    G.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    side = cfg.image_size + 2  # the grid's 2-pixel padding
    assert sample_grid(G, cfg.seed).shape == (1, 8 * side + 2, 10 * side + 2)
    assert torch.equal(seen[0].view(8, 10), torch.arange(10).repeat(8, 1))  # each row 0..9
    G_plain, _ = build_models(tiny())
    assert sample_grid(G_plain, cfg.seed).shape == (1, 8 * side + 2, 8 * side + 2)


def test_losses_move_in_the_adversarial_game(tmp_path, tiny):
    train(tiny(epochs=3, limit=512), tmp_path / "run")
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    rows = [r for r in map(json.loads, lines) if r["kind"] == "epoch"]
    assert all(math.isfinite(r[k]) for r in rows for k in ("d_loss", "g_loss"))
    first, last = rows[0], rows[-1]
    # both start at chance (BCE of D at 1/2 on real and fake: 2 ln 2), then D learns every
    # epoch and tells real from fake, while G learns to raise D's output on its images
    assert abs(first["d_loss"] - 2 * math.log(2)) < 0.05
    assert all(a["d_loss"] > b["d_loss"] for a, b in zip(rows[:-1], rows[1:], strict=True))
    assert last["d_real"] > last["d_fake"] + 0.05
    assert last["d_fake"] > first["d_fake"] and last["g_loss"] < first["g_loss"] - 0.03


def test_divergence_is_reported_and_stops(tmp_path, tiny, monkeypatch):
    reports = []
    original = steps.d_loss
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 8 else loss  # epoch 2 of 8 steps/epoch

    monkeypatch.setattr(steps, "d_loss", exploding)
    cfg = tiny(epochs=4)  # eval_every=-1: the divergence is the only report
    result = train(cfg, tmp_path / "run", lambda m, c: reports.append((m, c)))
    assert result["status"] == "diverged" and result["epoch"] == 2
    assert [p.name for p in numbered(tmp_path / "run")] == ["ckpt_000001.pt"]  # last good kept
    assert len(reports) == 1
    metrics, checkpoint_dir = reports[0]
    assert metrics["diverged"] is True and metrics["epoch"] == 2 and checkpoint_dir is None
    assert metrics[cfg.metric] == math.inf  # a metric the tuner can rank: the worst one


def test_fewer_images_than_a_batch(tmp_path, tiny):
    with pytest.raises(GanError, match="fewer than one batch"):
        train(tiny(limit=20, batch_size=32), tmp_path / "run")


def test_train_state_round_trips_with_the_checkpoint_keys(tiny):
    cfg = tiny(arch="modified", lr_decay=0.9)
    torch.manual_seed(0)
    a = TrainState.build(cfg, 10, [str(i) for i in range(10)], torch.device("cpu"))
    a.epoch, a.step, a.best = 3, 24, 1.5
    a.d_state.ada_p = 0.25
    saved = a.state_dict()
    # the keys of every checkpoint written so far: older runs must stay loadable
    old = {"G", "D", "G_ema", "opt_g", "opt_d", "sched_g", "sched_d", "epoch", "step"}
    old |= {"best_metric", "config", "num_classes", "class_names", "rng"}
    new = {"d_state"}  # ADA's probability and LeCam's anchors: optional on load
    assert set(saved) == old | new and saved["num_classes"] == 0  # unconditional: no classes
    torch.manual_seed(1)  # other weights, another RNG position
    b = TrainState.build(cfg, 10, [], torch.device("cpu"))
    torch.rand(3)
    b.load_state_dict(saved)
    again = b.state_dict()
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(saved[part][k], v) for k, v in again[part].items())
    assert (b.epoch, b.step, b.best) == (3, 24, 1.5)
    assert b.d_state.ada_p == 0.25
    del saved["d_state"]  # a checkpoint written before ADA and LeCam
    b.load_state_dict(saved)
    assert b.d_state.ada_p == 0.0
    assert torch.equal(again["rng"]["cpu"], saved["rng"]["cpu"])
    assert again["sched_g"] == saved["sched_g"]


@pytest.mark.slow
def test_compile_trains_the_residual_pair_under_spectral_norm(tmp_path, tiny, monkeypatch):
    # Inductor fails the compiled residual D's backward under spectral norm (its power iteration
    # updates vectors in place at each of the step's two D forwards): G alone is compiled then
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = tiny(arch="resnet", spectral_norm=True, loss="hinge", compile=True, limit=128)
    result = train(cfg, tmp_path / "run")
    assert result["epoch"] == 1 and all(math.isfinite(x) for x in _losses(tmp_path / "run")[0])
