"""Hostile inputs and faults: each one is a single clear error (or a counted skip), never a
traceback, code run from a file, a lost checkpoint or unbounded memory (docs/hostile-inputs.md)."""

import os
from pathlib import Path

import pytest
import torch

from gan import metrics
from gan.cli import main
from gan.config import GanError


def one_error(capsys, *named: str) -> str:
    """The single `gan: error:` line on stderr, checked to name every string in `named`."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1, err
    for name in named:
        assert name in errors[0], errors[0]
    return errors[0]


# -- weights files that run code --------------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command (what a crafted .pth does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"fc.weight": RunsCode(marker)}, path)
    return path


def test_crafted_fid_weights_run_no_code(tiny, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = crafted(tmp_path / "evil.pth", marker)
    data = tiny().data_dir
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "run"),
            "--set",
            *(f"{k}={v}" for k, v in dict(limit=64, width=8, latent_dim=16, device="cpu").items()),
            f"data_dir={data}",
            "eval_every=0",
            "fid_samples=16",
            f"fid_weights={evil}",
        ]
    )
    assert code == 2
    assert not marker.exists()  # the unpickler never ran the command
    one_error(capsys, str(evil), "not a plain weights file")


def test_fid_weights_of_the_wrong_layout_name_the_key(tmp_path, inception_weights):
    state = torch.load(inception_weights, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)
    torch.save(state, tmp_path / "wrong.pt")
    w = metrics.Weights(str(tmp_path / "wrong.pt"), "x", False)
    with pytest.raises(GanError, match=r"wrong\.pt has the wrong layout .*'fc\.weight'"):
        metrics.inception(w, torch.device("cpu"))
    del state["fc.weight"]
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(GanError, match=r"missing key 'fc\.weight'"):
        metrics.inception(w, torch.device("cpu"))


def test_no_weights_reach_a_full_unpickler(inception_weights, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    w = metrics.Weights(str(inception_weights), "x", False)
    fe = metrics.inception(w, torch.device("cpu"))
    assert calls and all(c is True for c in calls)
    x = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    assert metrics.extract(fe, x).shape == (2, 2048)


def test_crafted_cached_vgg_weights_run_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    crafted(cached, marker)
    with pytest.raises(GanError, match="VGG16 weights file .*not a plain weights file"):
        metrics.vgg(torch.device("cpu"))
    assert not marker.exists()
