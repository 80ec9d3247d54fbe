"""Your own RGB images: the `small` preset on a real colour folder and ZIP at 64x64 and 100x100
(seed 000's size) trains, resumes, evaluates and generates.

The images are the colour emoji of Debian's fonts-noto-color-emoji (bitmaps drawn by artists,
in three classes: faces, animals, food), rendered with Pillow: real RGB pictures with flat
colours, outlines and shading, a class structure, and no download."""

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from gan.cli import main

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLASSES = {  # class folder: a range of code points
    "faces": range(0x1F600, 0x1F638),
    "animals": range(0x1F400, 0x1F43D),
    "food": range(0x1F345, 0x1F380),
}
PER_CLASS = 36


@pytest.fixture(scope="session")
def emoji_folder(tmp_path_factory) -> Path:
    """A folder of 128x128 RGB emoji PNGs, one subfolder per class (108 images)."""
    if not EMOJI_FONT.exists():
        pytest.fail(f"{EMOJI_FONT} is missing: apt-get install fonts-noto-color-emoji")
    font = ImageFont.truetype(str(EMOJI_FONT), 109)  # its bitmaps' only size
    root = tmp_path_factory.mktemp("emoji")
    for name, points in CLASSES.items():
        (root / name).mkdir()
        kept = 0
        for cp in points:
            im = Image.new("RGB", (136, 128), "white")
            ImageDraw.Draw(im).text((0, 0), chr(cp), font=font, embedded_color=True)
            if len(im.getcolors(1 << 16) or range(1 << 16)) < 50:  # no glyph: a blank square
                continue
            im.resize((128, 128), Image.LANCZOS).save(root / name / f"{cp:x}.png")
            kept += 1
            if kept == PER_CLASS:
                break
        assert kept == PER_CLASS, f"only {kept} emoji drawn for {name}"
    return root


@pytest.fixture(scope="session")
def emoji_zip(emoji_folder, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("emoji-zip") / "emoji.zip"
    with zipfile.ZipFile(path, "w") as z:
        for png in sorted(emoji_folder.rglob("*.png")):
            z.write(png, png.relative_to(emoji_folder).as_posix())
    return path


@pytest.mark.parametrize("size,source", [(64, "folder"), (100, "zip")])
def test_small_preset_on_your_own_rgb_images(
    size, source, emoji_folder, emoji_zip, tmp_path, caplog
):
    caplog.set_level("INFO")
    data = emoji_folder if source == "folder" else emoji_zip
    run = tmp_path / "run"
    quick = [  # the preset as shipped, made small enough for a test
        f"dataset={source}",
        f"data_path={data}",
        f"image_size={size}",
        "width=8",
        "batch_size=16",
        "epochs=1",
        "eval_every=1",
        "fid_samples=64",
        "sample_every=1",
        "checkpoint_every=1",
        f"data_dir={tmp_path / 'data'}",
        "device=cpu",
    ]
    assert main(["train", "--preset", "small", "--out", str(run), "--set", *quick]) == 0
    assert main(["train", "--out", str(run), "--set", "epochs=2"]) == 0  # resumes
    assert "resumed" in caplog.text and "at epoch 1" in caplog.text
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2]
    evals = [r for r in log if r["kind"] == "eval"]
    assert evals and all(0 < r["fd_domain"] < float("inf") for r in evals)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["channels"], cfg["image_size"], cfg["conditional"]) == (3, size, True)
    assert cfg["diffaug"] == "color,translation,cutout" and cfg["lr_end"] < 1

    assert main(["evaluate", str(run), "--metric", "fd_domain", "--samples", "64"]) == 0
    out = json.loads((run / "evaluation.json").read_text())
    assert out["fd_domain"] > 0 and 0 < out["memorisation_ratio"] and out["epoch"] in (1, 2)

    images = tmp_path / "generated"
    assert main(["generate", str(run), "--n", "6", "--out", str(images), "--class", "food"]) == 0
    pngs = sorted(images.rglob("*.png"))
    assert len(pngs) == 6
    for png in pngs:
        with Image.open(png) as im:
            assert im.mode == "RGB" and im.size == (size, size)
