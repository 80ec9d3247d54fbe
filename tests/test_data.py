"""Data: real Fashion-MNIST, folders, ZIPs, conversions, bad files and augmentation."""

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan import data as data_module
from gan.config import GanError
from gan.data import augment, load_split, to_float, to_uint8
from gan.sources import convert_channels, pil_to_array, resize


def _write_fmnist_folder(root, tiny, n_per_class=6, classes=(0, 1, 7)):
    """Real Fashion-MNIST images written as PNGs into class subfolders."""
    data = load_split(tiny(limit=0), "test")
    for c in classes:
        (root / f"class{c}").mkdir(parents=True)
        picks = data.images[data.labels == c][:n_per_class]
        for i, img in enumerate(picks):
            Image.fromarray(img[0].numpy()).save(root / f"class{c}" / f"{i}.png")
    return data


def test_fashion_mnist_slice(tiny):
    data = load_split(tiny(limit=300), "train")
    assert data.images.shape == (300, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (300,) and data.num_classes == 10
    test = load_split(tiny(limit=300), "test")
    assert len(test) == 10_000  # limit applies to training only


def test_balanced_limit_is_a_fixed_draw_of_each_class(tmp_path, tiny):
    first = load_split(tiny(limit=1000), "train")
    assert torch.bincount(first.labels).tolist() != [100] * 10  # the first 1,000 are uneven
    data = load_split(tiny(limit=1000, balanced=True), "train")
    assert torch.bincount(data.labels).tolist() == [100] * 10
    again = load_split(tiny(limit=1000, balanced=True, data_dir=str(tmp_path / "d2")), "train")
    assert torch.equal(data.images, again.images)  # the same draw in another data_dir
    odd = load_split(tiny(limit=23, balanced=True, classes=(0, 7)), "train")
    assert torch.bincount(odd.labels).tolist() == [12, 11]
    with pytest.raises(GanError, match="'limit': 60001 is more than the 60000"):
        load_split(tiny(limit=60_001, balanced=True), "train")
    with pytest.raises(GanError, match="'balanced'.*set limit=N"):
        tiny(balanced=True, limit=0)

    def folder(name, limit, counts):
        for c, n in counts.items():  # class c with n images
            _write_fmnist_folder(tmp_path / name, tiny, n_per_class=n, classes=(c,))
        path, where = str(tmp_path / name), str(tmp_path / f"d-{name}")
        cfg = tiny(
            dataset="folder",
            data_path=path,
            limit=limit,
            balanced=True,
            holdout=0.0,
            data_dir=where,
        )
        return load_split(cfg, "train")

    with pytest.raises(GanError, match="'balanced'.*has no labels.*set balanced=false"):
        folder("flat", 4, {0: 6})  # one folder: unlabelled
    with pytest.raises(GanError, match="'limit': class 1 has 3 images, fewer than the 4"):
        folder("uneven", 8, {0: 6, 1: 3})


def test_classes_channels_and_size(tiny):
    data = load_split(tiny(classes=(0, 9), channels=3, image_size=100, limit=50), "train")
    assert data.images.shape == (50, 3, 100, 100)
    # the kept classes are relabelled 0..k-1, their names kept
    assert set(data.labels.tolist()) == {0, 1} and data.class_names == ["T-shirt/top", "Ankle boot"]
    # the first 50 images of those classes, resized and converted by the same functions (at
    # 28 px: the whole split at 100 px RGB is 1.8 GB)
    full = load_split(tiny(limit=0), "train")
    first = full.images[torch.isin(full.labels, torch.tensor([0, 9]))][:50]
    assert torch.equal(data.images, convert_channels(resize(first, 100), 3))
    assert torch.equal(data.images[:, 0], data.images[:, 2])  # gray repeated to RGB
    with pytest.raises(GanError, match="classes"):
        load_split(tiny(classes=(12,)), "train")


def test_prepared_cache_is_reused(tiny, monkeypatch):
    cfg = tiny(limit=100)
    first = load_split(cfg, "train")
    assert len(list((Path(cfg.data_dir) / "prepared").glob("*.pt"))) == 1

    def prepare_again(*args):
        raise AssertionError("the split was prepared again, not read from its cache")

    monkeypatch.setattr(data_module, "_prepare", prepare_again)
    again = load_split(cfg, "train")  # from the cache: _prepare is not called
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert (again.class_names, again.skipped) == (first.class_names, first.skipped)
    with pytest.raises(AssertionError, match="prepared again"):  # other options, other entry
        load_split(tiny(limit=50), "train")


def test_folder_with_classes_and_holdout(tmp_path, tiny):
    _write_fmnist_folder(tmp_path / "imgs", tiny)
    cfg = tiny(dataset="folder", data_path=str(tmp_path / "imgs"), limit=0, holdout=0.25)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert (len(train), len(test)) == (14, 4)  # round(0.25 * 18) held out, always the same ones
    assert train.class_names == ["class0", "class1", "class7"]
    assert train.images.shape[1:] == (1, 28, 28)


def test_zip_dataset_and_resize(tmp_path, tiny):
    _write_fmnist_folder(tmp_path / "imgs", tiny, classes=(3,), n_per_class=5)
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "imgs").rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path / "imgs"))
        zf.writestr("notes.txt", "not an image")
    data = load_split(
        tiny(
            dataset="zip", data_path=str(archive), image_size=32, channels=3, holdout=0.0, limit=0
        ),
        "train",
    )
    assert data.images.shape == (5, 3, 32, 32) and data.labels is None  # one folder: unlabelled


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/x.png"])
def test_zip_path_traversal_is_refused(tmp_path, tiny, member):
    archive = tmp_path / "bad.zip"
    buf = __import__("io").BytesIO()
    Image.new("L", (28, 28), 128).save(buf, "PNG")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", buf.getvalue())
        zf.writestr(member, buf.getvalue())
    with pytest.raises(GanError, match="refusing"):
        load_split(tiny(dataset="zip", data_path=str(archive)), "train")
    assert not (tmp_path.parent / "evil.png").exists()


def test_corrupt_files_are_skipped_and_counted(tmp_path, tiny, caplog):
    _write_fmnist_folder(tmp_path / "imgs", tiny, classes=(0,), n_per_class=4)
    (tmp_path / "imgs" / "class0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "imgs" / "class0" / "empty.jpg").write_bytes(b"")
    data = load_split(
        tiny(dataset="folder", data_path=str(tmp_path / "imgs"), holdout=0.0), "train"
    )
    assert len(data) == 4 and data.skipped == 2
    assert "skipped 2 unreadable" in caplog.text


def test_no_usable_images_is_an_error(tmp_path, tiny):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"garbage")
    with pytest.raises(GanError, match="no usable images"):
        load_split(tiny(dataset="folder", data_path=str(tmp_path / "imgs")), "train")
    with pytest.raises(GanError, match="not a folder"):
        load_split(tiny(dataset="folder", data_path=str(tmp_path / "missing")), "train")


def test_image_modes_convert_correctly():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    assert np.array_equal(pil_to_array(Image.fromarray(gray, "L"), 1)[:, :, 0], gray)
    # 16-bit: scaled to 8 bits, not clipped at 255 as PIL's convert('L') does
    deep = Image.fromarray(gray.astype(np.uint16) * 257)  # mode I;16
    assert np.abs(pil_to_array(deep, 1)[:, :, 0].astype(int) - gray).max() <= 1
    # RGBA: opaque pixels keep their colour, transparent ones become white
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3] = 200, 255
    out = pil_to_array(Image.fromarray(rgba, "RGBA"), 3)
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 3].tolist() == [255, 255, 255]
    # palette: expands to its colours
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    assert pil_to_array(pal, 3)[0, 1].tolist() == [200, 100, 50]
    # RGB to grayscale uses luma weights
    assert pil_to_array(Image.new("RGB", (2, 2), (255, 0, 0)), 1)[0, 0, 0] == 76


def test_augmentation_keeps_shape_range_and_changes_images(tiny):
    x = to_float(load_split(tiny(limit=64), "train").images)
    torch.manual_seed(0)
    y = augment(x, hflip=True, rotate=15.0, zoom=0.1)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert (y - x).abs().mean() > 0.05
    assert torch.equal(augment(x, False, 0.0, 0.0), x)
    assert torch.equal(
        to_uint8(to_float(load_split(tiny(limit=8), "train").images)),
        load_split(tiny(limit=8), "train").images,
    )


def test_unwritable_data_dir_is_a_clear_error(tmp_path, tiny):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(GanError, match="config key 'data_dir'.*--set data_dir=DIR"):
        load_split(tiny(data_dir=str(blocker / "data")), "train")


# -- dataset=fake: smoke runs without any data --------------------------------------------------


def test_fake_images_are_seeded_class_conditional_and_sized(tmp_path):
    from gan.config import make_config

    cfg = make_config(
        {
            "dataset": "fake",
            "metric": "fd_domain",
            "image_size": 20,
            "channels": 3,
            "data_dir": str(tmp_path / "a"),
        }
    )
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.images.shape == (1024, 3, 20, 20) and train.images.dtype == torch.uint8
    assert len(test) == 256 and train.num_classes == test.num_classes == 10
    assert torch.bincount(train.labels).tolist() == [103] * 4 + [102] * 6  # n / 10 each
    again = load_split(make_config({"data_dir": str(tmp_path / "b")}, base=cfg), "train")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    assert not torch.equal(test.images[:10], train.images[:10])  # the splits hold other images
    # the class is in the image: each class's mean image is nearer its own images than others'
    x = train.images.float().flatten(1)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    nearest = torch.cdist(test.images.float().flatten(1), means).argmin(1)
    assert (nearest == test.labels).float().mean() > 0.9
    # the common filters apply as to any dataset
    some = load_split(make_config({"classes": [2, 5], "limit": 50}, base=cfg), "train")
    assert len(some) == 50 and set(some.labels.tolist()) <= {0, 1}
    assert some.class_names == ["fake-2", "fake-5"]


def test_fake_refuses_an_inception_fid(tmp_path):
    from gan.config import make_config

    for values in ({}, {"metric": "fd_domain", "kid": True}):
        with pytest.raises(GanError, match="dataset 'fake' is seeded noise.*metric=fd_domain"):
            make_config({"dataset": "fake", **values})


def test_gan_train_runs_one_epoch_on_fake_data(tmp_path):
    from gan.cli import main

    out = tmp_path / "run"  # the smoke preset: dataset=fake, one epoch, metric=fd_domain
    args = ["--preset", "smoke", "--out", str(out), "--set", f"data_dir={tmp_path / 'd'}"]
    assert main(["train", *args]) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evals = [row for row in rows if row["kind"] == "eval"]
    assert evals and math.isfinite(evals[-1]["fd_domain"]) and "fid" not in evals[-1]
    assert (out / "checkpoints").is_dir() and not list(tmp_path.glob("d/torchvision"))
