"""Memorisation and utility on real Fashion-MNIST: a generator that copies its training images is
caught, one that draws new real images is not; a classifier learns from good generated images
and not from noise; `gan evaluate --utility` writes them and refuses what it cannot score."""

import json
import re
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from PIL import Image

from gan.cli import main
from gan.config import GanError
from gan.data import load_split, to_float
from gan.train import train
from gan.utility import memorisation, utility


class BankG(nn.Module):
    """A stand-in generator that draws images of a bank (uint8, with labels) by class: which
    images it holds decides whether it 'copies' or 'generalises'."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, noise: bool = False):
        super().__init__()
        self.images, self.labels, self.noise = images, labels, noise
        self.num_classes = 0 if labels is None else int(labels.max()) + 1
        self.latent_dim = 4
        self.scale = nn.Parameter(torch.ones(()))  # samplers look for a parameter's device

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        pick = (z[:, 0].abs() * 1e6).long()  # a deterministic draw from z
        if y is None:
            idx = pick % len(self.images)
        else:
            idx = torch.stack([self._of(int(c), int(p)) for c, p in zip(y, pick, strict=True)])
        x = to_float(self.images[idx])
        return torch.rand_like(x) * 2 - 1 if self.noise else x

    def _of(self, c: int, p: int) -> torch.Tensor:
        members = (self.labels == c).nonzero().flatten()
        return members[p % len(members)]


@pytest.fixture
def fmnist_split(tiny):
    cfg = tiny(limit=500, balanced=True)
    train_set, test_set = load_split(cfg, "train"), load_split(cfg, "test")
    return train_set, test_set


def _fakes(G, n=2000):
    from gan.sampling import sample

    return sample(G, 0, 0, n)[0]


def test_memorisation_tells_a_copier_from_new_images(fmnist_split):
    train_set, test_set = fmnist_split
    heldout, new = test_set.images[:2000], test_set.images[5000:7000]
    copier = BankG(train_set.images, None)
    m = memorisation(_fakes(copier), train_set.images, heldout)
    assert m["memorisation_ratio"] < 0.05 and m["near_copies"] > 0.95
    fresh = BankG(new, None)  # real images the training set does not hold
    m = memorisation(_fakes(fresh), train_set.images, heldout)
    assert 0.9 < m["memorisation_ratio"] < 1.1 and m["near_copies"] < 0.03
    assert m["memorisation_space"] == "pixels<=32px"
    # half copies: the ratio falls and the copies show
    mixed = torch.cat([_fakes(copier, 1000), _fakes(fresh, 1000)])
    m = memorisation(mixed, train_set.images, heldout)
    assert 0.4 < m["memorisation_ratio"] < 0.6 and 0.45 < m["near_copies"] < 0.55
    with pytest.raises(GanError, match="holdout above 0"):
        memorisation(mixed, train_set.images, heldout[:1])


@pytest.mark.slow
def test_utility_rewards_real_looking_images_and_not_noise(fmnist_split):
    train_set, test_set = fmnist_split
    pool = replace(test_set, images=test_set.images[5000:], labels=test_set.labels[5000:])
    test = replace(test_set, images=test_set.images[:2000], labels=test_set.labels[:2000])
    good = BankG(pool.images, pool.labels)  # new real images of the asked class
    u = utility(good, train_set, test, n_gen=1000, steps=60)
    assert u["utility_real"] > 0.6 and u["utility_generated_only"] > 0.6
    assert u["utility_real_plus_generated"] > u["utility_real"] - 0.02
    assert u["utility_seeds"] == 3 and u["utility_real_std"] >= 0.0
    noise = BankG(pool.images, pool.labels, noise=True)  # labels carry nothing
    u_noise = utility(noise, train_set, test, n_gen=1000, steps=60)
    assert u_noise["utility_generated_only"] < 0.2  # chance is 0.1
    assert u_noise["utility_real"] == pytest.approx(u["utility_real"])  # same seeds, same data
    with pytest.raises(GanError, match="unconditional.*conditional=true"):
        utility(BankG(pool.images, None), train_set, test)


def test_the_augment_bench_measures_each_mix_against_the_utility_it_reports(fmnist_split):
    """bench augment's real and 1:1 rows are gan.utility's own numbers (same seeds, same images);
    its other mixes change what the classifier sees."""
    from bench.rows.augment import protocols

    train_set, test_set = fmnist_split
    pool = replace(test_set, images=test_set.images[5000:], labels=test_set.labels[5000:])
    test = replace(test_set, images=test_set.images[:300], labels=test_set.labels[:300])
    good = BankG(pool.images, pool.labels)
    u = utility(good, train_set, test, n_gen=200, steps=4)  # the path, not the accuracy
    mixes = protocols(good, train_set, test, steps=4, n_gen=200, larger=400)
    assert mixes["real"]["accuracy"] == u["utility_real"]
    assert mixes["1:1"]["accuracy"] == u["utility_real_plus_generated"]
    assert mixes["1:1"]["std"] == u["utility_real_plus_generated_std"]
    assert mixes["1:1, a larger draw"]["generated"] == 400
    assert mixes["1:1, truncated z"]["generated"] == 200
    assert mixes["1:1, filtered"]["generated"] == 0  # 4 steps: the judge is sure of nothing
    assert mixes["1:1, filtered"]["accuracy"] is None
    scored = [m for m in mixes.values() if m["accuracy"] is not None]
    assert len({round(m["accuracy"], 6) for m in scored}) > len(scored) // 2
    assert all(0.0 <= m["accuracy"] <= 1.0 and m["std"] >= 0.0 for m in scored)


def test_the_augment_bench_names_the_row_that_makes_its_run(tmp_path, monkeypatch, capsys):
    """No run, an unfinished run, an unknown recipe: one line naming what to run, exit 2."""
    from bench import RESULTS
    from bench.__main__ import main as bench
    from bench.rows.small import RECIPES, every_of, gan_config, gan_run_dir

    monkeypatch.setenv("GAN_BENCH_WORK", str(tmp_path / "work"))
    argv = ["augment", "--quick", "--sizes", "1000", "--data-dir", str(tmp_path)]
    before = sorted(RESULTS.iterdir())

    def refused(more: list[str], message: str) -> None:
        assert bench([*argv, *more]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(message, err[0]), err

    refused(
        [],
        "no scored small-plus-r1 run .* `python -m bench small --sizes 1000 --recipes "
        "small-plus-r1 --quick` first",
    )
    preset, overrides = RECIPES["small-plus-r1"]  # where the small row keeps its 2-epoch run
    cfg = gan_config(preset, overrides, 1000, 2, every_of(1000, 2), str(tmp_path), "cpu")
    run = gan_run_dir(tmp_path / "work" / "small-quick", 1000, "small-plus-r1", cfg)
    run.mkdir(parents=True)
    (run / "scores.json").write_text(json.dumps({"a": {"epoch": 1, "fd_domain": 9.0}}))
    refused([], "scored to epoch 1 of 2; run .*--quick` to its end first")
    refused(["--recipes", "nonesuch"], "not a run of the small row; recipes: small,")
    assert sorted(RESULTS.iterdir()) == before  # nothing measured: no run JSON written


def test_evaluate_writes_memorisation_and_refuses_utility_of_an_unconditional_g(
    fid_cfg, tmp_path, capsys
):
    run = tmp_path / "run"
    train(fid_cfg(metric="fd_domain"), run)
    assert main(["evaluate", str(run), "--metric", "fd_domain", "--samples", "64"]) == 0
    out = json.loads((run / "evaluation.json").read_text())
    assert 0.0 < out["memorisation_ratio"] and 0.0 <= out["near_copies"] <= 1.0
    assert "memorised" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "fd_domain", "--utility"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unconditional" in err[0] and "conditional=true" in err[0]


def test_evaluate_utility_of_a_conditional_run(fid_cfg, tmp_path, monkeypatch):
    import gan.utility

    monkeypatch.setattr(gan.utility, "STEPS", 40)  # the path, not the classifier's quality
    monkeypatch.setattr(gan.utility, "UTILITY_GEN", 500)
    run = tmp_path / "run"
    train(fid_cfg(metric="fd_domain", conditional=True, arch="resnet"), run)
    args = ["evaluate", str(run), "--metric", "fd_domain", "--samples", "64", "--utility"]
    assert main(args) == 0
    out = json.loads((run / "evaluation.json").read_text())
    for key in ("utility_real", "utility_real_plus_generated", "utility_generated_only"):
        assert 0.0 <= out[key] <= 1.0 and out[f"{key}_std"] >= 0.0
    assert out["utility_gen"] == 500 and out["utility_steps"] == 40


@pytest.mark.parametrize(
    "values,message",
    [
        (["limit=20", "balanced=true"], "'balanced': dataset .* has no labels.*balanced=false"),
        ([], "'conditional': needs a labelled dataset.*conditional=false and metric=fid"),
        (["dataset=fashion_mnist", "limit=70000", "balanced=true"], "70000 is more than the 60000"),
        (["diffaug=", "ada_target=0.6"], "'ada_target'.*diffaug is off"),
        (["lr_decay=0.9"], "'lr_decay' \\(0.9\\) and 'lr_end' \\(0.2\\).*set lr_decay=1.0"),
    ],
)
def test_limited_data_settings_refused_in_one_line(values, message, tmp_path, tiny, capsys):
    flat = tmp_path / "flat"  # unlabelled: no class folders
    flat.mkdir()
    for i in range(40):
        Image.new("L", (28, 28), i * 5).save(flat / f"{i}.png")
    where = [f"data_path={flat}", "image_size=28", "channels=1", f"data_dir={tmp_path / 'd'}"]
    args = ["train", "--preset", "small", "--out", str(tmp_path / "run"), "--set", *where]
    assert main([*args, *values]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gan: error: config key")
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
