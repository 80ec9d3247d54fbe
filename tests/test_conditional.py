"""Class-conditional GANs on Fashion-MNIST: every arch trains, classes are asked for and drawn."""

import math

import pytest
import torch
from fixtures_data import tiny_config as base_config

from gan.checkpoint import load_generator
from gan.cli import main
from gan.config import GanError, load_config
from gan.data import load_split
from gan.evaluate import check_classes
from gan.generate import generate_images, interpolate
from gan.models import ARCHS
from gan.sampling import latents, model_classes, resolve_class
from gan.train import train


def tiny_config(data_dir, **values):
    """TINY, class-conditional."""
    return base_config(data_dir, **{"conditional": True, **values})


@pytest.fixture(scope="module")
def data_dir(shared_data_dir):
    return shared_data_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, fmnist_dir):
    """Trouser, Sneaker and Bag: 1500 real images, 4 epochs (~5 s), enough to draw each class."""
    cfg = tiny_config(data_dir, classes=(1, 7, 8), limit=1500, epochs=4, lr_g=1e-3, lr_d=1e-3)
    out = tmp_path_factory.mktemp("conditional") / "run"
    train(cfg, out)
    return out


def test_the_classifier_recognises_each_requested_class(run):
    G, cfg, ckpt = load_generator(run)
    rows = check_classes(G, cfg, model_classes(G, ckpt), n=64, seed=0)
    assert [r["name"] for r in rows] == ["Trouser", "Sneaker", "Bag"]
    for r in rows:  # the requested class is the one seen most, and by a clear margin
        assert r["seen_as"] == r["name"] and r["recognised"] > 0.6, rows
        assert 0 < r["spread"] < 2  # diversity relative to the real class's


def test_check_classes_prints_a_table(run, capsys):
    assert main(["generate", str(run), "--check-classes", "--n", "16", "--class", "Bag"]) == 0
    out = capsys.readouterr().out
    assert "Bag" in out and "Trouser" not in out and "recognised" in out


def test_classes_by_name_or_index_in_class_folders(run, tmp_path):
    G, cfg, ckpt = load_generator(run)
    classes = model_classes(G, ckpt)
    # only the classes it trained on, relabelled 0..2 by the `classes` filter
    assert classes == {0: "Trouser", 1: "Sneaker", 2: "Bag"} and G.num_classes == 3
    assert resolve_class("sneaker", classes) == resolve_class("1", classes) == 1
    with pytest.raises(GanError, match=r"0 \(Trouser\), 1 \(Sneaker\), 2 \(Bag\)"):
        resolve_class("Coat", classes)
    with pytest.raises(GanError, match="not one this generator was trained on"):
        resolve_class(7, classes)  # Sneaker's label in the full dataset, not this model's
    mixed = generate_images(run, 9, tmp_path / "mixed")
    assert (
        sorted(p.parent.name for p in mixed.rglob("*.png"))
        == ["Bag"] * 3 + ["Sneaker"] * 3 + ["Trouser"] * 3
    )
    a = generate_images(run, 4, tmp_path / "a", seed=2, klass="Sneaker")
    b = generate_images(run, 4, tmp_path / "b", seed=2, klass=1)
    assert [p.read_bytes() for p in sorted(a.rglob("*.png"))] == [
        p.read_bytes() for p in sorted(b.rglob("*.png"))
    ]
    assert {p.parent.name for p in a.rglob("*.png")} == {"Sneaker"}


def test_class_folders_train_a_conditional_model_scored_by_fd_domain(run, tmp_path):
    out = generate_images(run, 120, tmp_path / "gen", seed=4)
    cfg = tiny_config(
        tmp_path / "data",
        dataset="folder",
        data_path=str(out),
        holdout=0.2,
        limit=0,
        metric="fd_domain",
        eval_every=0,
        fid_samples=24,
    )
    data = load_split(cfg, "train")
    assert data.class_names == ["Bag", "Sneaker", "Trouser"] and len(data) == 96
    reports = []
    result = train(cfg, tmp_path / "again", lambda m, d: reports.append(m))
    assert result["status"] == "completed" and math.isfinite(reports[-1]["fd_domain"])
    assert load_generator(tmp_path / "again")[2]["class_names"] == ["Bag", "Sneaker", "Trouser"]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_trains_conditionally_and_draws_named_classes(arch, data_dir, tmp_path):
    cfg = tiny_config(data_dir, arch=arch)
    assert train(cfg, tmp_path / "run")["status"] == "completed"
    G, cfg, ckpt = load_generator(tmp_path / "run")
    assert G.num_classes == 10
    out = generate_images(tmp_path / "run", 10, tmp_path / "gen", klass="T-shirt/top")
    assert [p.parent.name for p in out.rglob("*.png")] == ["T-shirt_top"] * 10  # '/' is no folder
    keys = torch.cat([latents(s, 0, 1, G.latent_dim) for s in (1, 2)])
    paths = interpolate(G, keys, ["1", "2"], tmp_path / "walk", 3, "slerp", [0, 9])
    assert [p.name for p in paths] == ["strip_00_1-2.png", "grid.png", "walk.gif"]


@pytest.mark.slow
def test_conditional_generator_varies_with_z_within_a_class(data_dir, tmp_path):
    """Ten classes, a narrow DCGAN (~40 s): each class's images must vary with z. A label
    embedding as wide as z made G ignore z here (mean spread 0.08; now ~0.28)."""
    cfg = load_config(
        preset="fmnist",
        overrides=[
            # the DCGAN recipe this was measured on (the label embedding concatenated to z)
            "arch=dcgan",
            "loss=bce",
            "beta1=0.5",
            "beta2=0.999",
            "ema_rampup=0",
            f"data_dir={data_dir}",
            "conditional=true",
            "limit=8192",
            "epochs=6",
            "width=16",
            "batch_size=64",
            "eval_every=-1",
            "sample_every=0",
            "checkpoint_every=0",
            "device=cpu",
        ],
    )
    train(cfg, tmp_path / "run")
    G, cfg, ckpt = load_generator(tmp_path / "run")
    rows = check_classes(G, cfg, model_classes(G, ckpt), n=64, seed=0)
    assert sum(r["recognised"] for r in rows) / len(rows) > 0.7, rows
    assert sum(r["spread"] for r in rows) / len(rows) > 0.2, rows
