"""`gan generate`: folders and ZIPs that train again, byte-exact seeds, latent walks, errors."""

import csv
import dataclasses
import math
import zipfile

import numpy as np
import pytest
import torch
from fixtures_data import tiny_config as base_config
from PIL import Image

from gan.checkpoint import load_generator
from gan.cli import main
from gan.config import make_config
from gan.data import load_split
from gan.generate import generate_images, lerp, slerp
from gan.models import build_models
from gan.sampling import latents, render
from gan.train import train

CLASSES = (1, 7, 8)  # Trouser, Sneaker, Bag: the domain classifier trains on 18k, not 60k, images


def tiny_config(data_dir, **values):
    """TINY, longer and faster-learning: samples that vary with z and look like the data."""
    more = dict(limit=1024, epochs=6, lr_g=1e-3, lr_d=1e-3, classes=CLASSES)
    return base_config(data_dir, **{**more, **values})


@pytest.fixture(scope="module")
def data_dir(shared_data_dir):
    return shared_data_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, fmnist_dir):
    """One unconditional run (192 steps, ~5 s): its samples vary with z and look like the data."""
    out = tmp_path_factory.mktemp("generate") / "run"
    train(tiny_config(data_dir), out)
    return out


def pngs(folder):
    return sorted(p for p in folder.rglob("*.png"))


def read_pngs(folder) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.open(p)))[None] for p in pngs(folder)])


def test_generate_then_evaluate_then_train_on_the_folder(run, tmp_path):
    out = generate_images(run, 200, tmp_path / "gen", seed=5, batch=64)
    files = pngs(out)
    assert len(files) == 200
    with Image.open(files[0]) as img:
        assert img.size == (28, 28) and img.mode == "L"  # the training size and channels
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["file"] for r in rows] == [p.name for p in files]
    assert rows[3]["seed"] == "5" and rows[3]["index"] == "3" and rows[3]["checkpoint"]
    # evaluate: the PNGs score closer to real Fashion-MNIST than an untrained G's images
    from gan.metrics import make_evaluator

    G, cfg, _ = load_generator(run)
    evaluator = make_evaluator(dataclasses.replace(cfg, metric="fd_domain", fid_samples=200))
    G0 = build_models(cfg)[0].eval()
    untrained = render(G0, latents(5, 0, 200, G.latent_dim))
    fake = evaluator.evaluate_images(read_pngs(out))
    assert fake["fd_domain"] < evaluator.evaluate_images(untrained)["fd_domain"] / 2
    # the folder is a dataset: train on it, with augmentation of its (real to it) images
    again = make_config(
        dict(
            dataset="folder",
            data_path=str(out),
            data_dir=str(tmp_path / "data"),
            holdout=0.1,
            width=8,
            latent_dim=16,
            batch_size=32,
            epochs=1,
            eval_every=-1,
            device="cpu",
            hflip=True,
            rotate=10.0,
            zoom=0.1,
        )
    )
    data = load_split(again, "train")
    assert len(data) == 180 and data.labels is None  # 200 minus the 10% holdout; no classes
    written = {x.numpy().tobytes() for x in read_pngs(out)}
    assert all(x.numpy().tobytes() in written for x in data.images)  # lossless round trip
    assert train(again, tmp_path / "again")["status"] == "completed"
    G2 = load_generator(tmp_path / "again")[0]
    assert math.isfinite(evaluator.evaluate(G2, n=64)["fd_domain"])


def test_same_seed_same_bytes_in_zip_and_folder(run, tmp_path):
    a = generate_images(run, 40, tmp_path / "a.zip", seed=7, batch=16)
    b = generate_images(run, 40, tmp_path / "b.zip", seed=7, batch=16)
    assert a.read_bytes() == b.read_bytes()  # fixed member dates: the archive itself is identical
    c = generate_images(run, 40, tmp_path / "c", seed=7, batch=40)  # other batching, same images
    with zipfile.ZipFile(a) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        assert [zf.read(n) for n in names] == [p.read_bytes() for p in pngs(c)]
        assert "manifest.csv" in zf.namelist()
    d = generate_images(run, 40, tmp_path / "d", seed=8)
    assert [p.read_bytes() for p in pngs(c)] != [p.read_bytes() for p in pngs(d)]
    assert not list(tmp_path.glob(".*.partial"))  # the temporary archive was renamed into place
    cfg = make_config(dict(dataset="zip", data_path=str(a), data_dir=str(tmp_path / "data")))
    assert len(load_split(cfg, "train")) + len(load_split(cfg, "test")) == 40


def test_image_i_comes_from_its_own_seed_not_the_global_rng(run, tmp_path):
    torch.manual_seed(1)
    a = generate_images(run, 12, tmp_path / "a", seed=3, batch=5)
    torch.manual_seed(2)
    b = generate_images(run, 12, tmp_path / "b", seed=3, batch=12)
    assert [p.read_bytes() for p in pngs(a)] == [p.read_bytes() for p in pngs(b)]
    G, _, _ = load_generator(run)
    state = torch.get_rng_state()
    z = latents(3, 9, 1, G.latent_dim)  # image 9 alone, as the server or a later run draws it
    assert torch.equal(state, torch.get_rng_state())
    with Image.open(pngs(a)[9]) as img:
        assert torch.equal(torch.from_numpy(np.array(img)), render(G, z)[0, 0])
    x = render(G, torch.cat([latents(s, 0, 1, G.latent_dim) for s in range(8)])).float()
    assert min((x[i] - x[j]).abs().mean() for i in range(8) for j in range(i)) > 1  # all differ


def test_slerp_and_lerp_paths():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    t = torch.linspace(0, 1, 5)
    s = slerp(a, b, t)
    assert torch.allclose(s[0], a) and torch.allclose(s[-1], b)
    assert torch.allclose(s.norm(dim=1), torch.full((5,), 3.0))  # stays on the sphere
    assert torch.allclose(lerp(a, b, t)[2], torch.tensor([1.5, 1.5]))
    assert torch.allclose(slerp(a, a, t), a.expand(5, 2))  # parallel: no division by zero


def test_interpolate_writes_strips_grid_and_gif(run, tmp_path, capsys):
    out = tmp_path / "walk"
    rc = main(
        [
            "generate",
            str(run),
            "--interpolate",
            "--seeds",
            "1,7,42",
            "--steps",
            "5",
            "--mode",
            "linear",
            "--scale",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert (out / "strip_00_1-7.png").is_file() and (out / "strip_01_7-42.png").is_file()
    with Image.open(out / "grid.png") as img:  # 2 strips x 5 steps, 56 px cells, 2 px gaps
        assert img.size == (5 * 58 + 2, 2 * 58 + 2)
    with Image.open(out / "walk.gif") as gif:
        assert gif.n_frames == 3 * 5  # a closed loop: 1 -> 7 -> 42 -> 1
    G, _, _ = load_generator(run)
    with Image.open(out / "strip_00_1-7.png") as strip:  # the first cell is seed 1's first image
        first = torch.from_numpy(np.array(strip))[2:58:2, 2:58:2]
    assert torch.equal(first, render(G, latents(1, 0, 1, G.latent_dim))[0, 0])


def test_interpolate_between_latent_vectors_from_a_file(run, tmp_path):
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((3, 16)).astype("f4"))
    rc = main(
        [
            "generate",
            str(run),
            "--interpolate",
            "--latents",
            str(tmp_path / "z.npy"),
            "--steps",
            "3",
            "--out",
            str(tmp_path / "walk"),
        ]
    )
    assert rc == 0 and (tmp_path / "walk" / "strip_01_z1-z2.png").is_file()
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), "f4"))
    rc = main(
        [
            "generate",
            str(run),
            "--interpolate",
            "--latents",
            str(tmp_path / "bad.npy"),
            "--out",
            str(tmp_path / "walk2"),
        ]
    )
    assert rc == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n", "4", "--class", "Bag"], "unconditional"),
        (["--n", "0"], "at least 1"),
        (["--n", "4", "--seed", "-1"], "out of range"),
        (["--n", "4", "--check-classes"], "unconditional"),
        (["--interpolate", "--seeds", "1,x"], "2 or more integers"),
        (["--interpolate", "--seeds", "1"], "2 or more integers"),
    ],
)
def test_user_errors_exit_2_with_a_message(run, tmp_path, capsys, extra, message):
    assert main(["generate", str(run), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_refuses_to_mix_into_a_non_empty_folder_and_needs_out(run, tmp_path, capsys):
    (tmp_path / "old.png").write_bytes(b"x")
    assert main(["generate", str(run), "--n", "2", "--out", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["generate", str(run), "--n", "2"]) == 2
    assert "--out is required" in capsys.readouterr().err
