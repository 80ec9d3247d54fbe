"""Files that come from somewhere else. Every variant of one real checkpoint (each key removed or
of a wrong type, each tensor truncated or reshaped, weights renamed, the config replaced or
spoilt key by key) goes through every reader: gan generate, gan evaluate, serve's loader, resume
(latest_good and gan train --out). An unusable one is one `gan: error:` line naming the file,
exit 2, nothing in its run directory changed; resume falls back past it with one warning. Every
subset of unreadable ZIP members is skipped and counted; traversal names refuse the archive."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import tiny_config
from PIL import Image

from gan.checkpoint import latest_good, load_checkpoint
from gan.checkpoint_check import _built
from gan.cli import main
from gan.config import GanError, make_config
from gan.serve import make_app
from gan.sources import read_files
from gan.train import train

# what a checkpoint may lack and still load (older runs): the rest is required
OPTIONAL = {"G_ema", "best_metric", "num_classes", "class_names", "d_state"}
# a value of another type for each type a checkpoint holds
WRONG = {dict: [1, 2], int: "1", float: "inf", list: "names", type(None): "none"}


def wrong(value: object) -> object:
    return next(w for kind, w in WRONG.items() if isinstance(value, kind))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, fmnist_dir, shared_data_dir) -> tuple[Path, dict]:
    """(a trained tiny run, its checkpoint as loaded): width 8, 256 images, 1 epoch."""
    run = tmp_path_factory.mktemp("elsewhere") / "run"
    train(tiny_config(shared_data_dir, sample_every=0), run)
    return run, torch.load(run / "checkpoints" / "ckpt_000001.pt", weights_only=True)


def checkpoint_variants(state: dict):
    """(name, variant, usable) for every way the sweep spoils the checkpoint."""

    def but(**parts):
        return {**state, **parts}

    for key in state:
        yield f"without {key}", {k: v for k, v in state.items() if k != key}, key in OPTIONAL
        yield f"{key} as {wrong(state[key])!r}", but(**{key: wrong(state[key])}), False
    for part in ("G", "D", "G_ema"):
        weights = state[part]
        for name, t in weights.items():
            short = t.flatten()[: max(t.numel() - 1, 0)]
            flat = t.reshape(-1) if t.dim() != 1 else t.reshape(1, -1)
            for how, new in (("truncated", short), ("reshaped", flat)):
                yield f"{part}[{name!r}] {how}", but(**{part: {**weights, name: new}}), False
        renamed = {k.replace(".", "_", 1): v for k, v in weights.items()}
        yield f"{part} keys renamed", but(**{part: renamed}), False
    cfg = state["config"]
    for config in (None, [cfg], "config.yaml", {**cfg, "widht": 8}, {}):
        yield f"config {str(config)[:20]}", but(config=config), False
    for key, value in cfg.items():
        yield f"config {key} as a dict", but(config={**cfg, key: {"v": value}}), False
        other = 8 if isinstance(value, str) else "eight"  # a str for numbers and flags
        if isinstance(value, (list, tuple)):
            other = [[1]]
        yield f"config {key} as {other!r}", but(config={**cfg, key: other}), False


def snapshot(folder: Path) -> dict:
    """Every file under folder: (size, mtime_ns, sha1), to see that nothing changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, _sha(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _sha(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def refused(capsys, caplog, argv: list[str], path: Path) -> str:
    """main(argv) exits 2 with one stderr line naming path, and nothing logged beside it."""
    caplog.clear()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("gan: error: ") and str(path) in err, err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    return err


@pytest.mark.slow
def test_every_spoilt_checkpoint_is_refused_by_every_reader(
    saved, tmp_path, capsys, caplog, shared_data_dir
):
    run, state = saved
    config_yaml = (run / "config.yaml").read_bytes()
    good = (run / "checkpoints" / "ckpt_000001.pt").read_bytes()
    counts = {"refused": 0, "usable": 0}
    for i, (name, variant, usable) in enumerate(checkpoint_variants(state)):
        # B: a run whose only checkpoint is the variant; A: a good epoch 1, the variant after it
        b, a = tmp_path / f"b{i}", tmp_path / f"a{i}"
        for folder in (a, b):
            (folder / "checkpoints").mkdir(parents=True)
            (folder / "config.yaml").write_bytes(config_yaml)
        ckpt = b / "checkpoints" / "ckpt_000001.pt"
        torch.save(variant, ckpt)
        (a / "checkpoints" / "ckpt_000001.pt").write_bytes(good)
        (a / "checkpoints" / "ckpt_000002.pt").write_bytes(ckpt.read_bytes())
        out = tmp_path / f"gen{i}"
        generate = ["generate", str(ckpt), "--out", str(out), "--n", "2", "--device", "cpu"]
        evaluate = ["evaluate", str(ckpt), "--metric", "fd_domain", "--samples", "16"]
        evaluate += ["--device", "cpu", "--data-dir", str(shared_data_dir)]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gan.checkpoint"):
            found = latest_good(a)
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if usable:
            counts["usable"] += 1
            assert found[0].name == "ckpt_000002.pt" and not warned, name
            assert main(generate) == 0 and len(list(out.iterdir())) == 3, name  # 2 + manifest
            make_app(ckpt)
            if name == "without G_ema":  # one full evaluation: the others score the same G
                assert main(evaluate) == 0 and (b / "evaluation.json").is_file()
            assert main(["train", "--out", str(b)]) == 0  # already at its epoch: nothing to do
            capsys.readouterr()
            continue
        counts["refused"] += 1
        # resume: the previous checkpoint, one warning naming the spoilt one
        assert found[0].name == "ckpt_000001.pt" and found[1]["epoch"] == 1, name
        assert len(warned) == 1 and "ckpt_000002.pt" in warned[0], (name, warned)
        assert "falling back to ckpt_000001.pt" in warned[0]
        before = snapshot(b)
        refused(capsys, caplog, generate, ckpt)
        assert not out.exists(), name
        refused(capsys, caplog, evaluate, ckpt)
        refused(capsys, caplog, ["train", "--out", str(b)], ckpt)  # nothing else to resume
        with pytest.raises(GanError) as e:
            make_app(ckpt)
        assert str(ckpt) in str(e.value) and "\n" not in str(e.value), name
        assert snapshot(b) == before, name
    print(f"checkpoint variants: {counts}")
    assert counts["refused"] > 200 and counts["usable"] == len(OPTIONAL)


def test_resume_past_a_checkpoint_without_sched_g_trains_on(saved, tmp_path, caplog, capsys):
    run, state = saved
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    (out / "checkpoints" / "ckpt_000001.pt").write_bytes(
        (run / "checkpoints" / "ckpt_000001.pt").read_bytes()
    )
    torch.save({k: v for k, v in state.items() if k != "sched_g"}, out / "checkpoints" / "x.pt")
    (out / "checkpoints" / "x.pt").rename(out / "checkpoints" / "ckpt_000002.pt")
    with caplog.at_level(logging.INFO):
        assert main(["train", "--out", str(out), "--set", "epochs=2"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "key(s) sched_g missing" in warnings[0], warnings
    assert "done: epoch 2" in capsys.readouterr().out
    assert "sched_g" in torch.load(out / "checkpoints" / "ckpt_000002.pt", weights_only=True)


def test_checking_a_checkpoint_leaves_the_callers_rng_as_it_was(saved):
    """The check builds the config's models to compare shapes; their initialisers draw random
    numbers, which must not move the RNG of a caller that loads a checkpoint and then samples."""
    run, _ = saved
    _built.cache_clear()  # the first read of a config builds its models
    torch.manual_seed(0)
    before = torch.get_rng_state()
    load_checkpoint(run / "checkpoints" / "ckpt_000001.pt")
    assert torch.equal(torch.get_rng_state(), before)
    assert _built.cache_info().misses == 1


def test_a_config_asking_for_a_huge_model_is_refused_without_building_it(saved, tmp_path):
    """The shape check builds what the file's config asks for: without memory, so a small file
    whose config asks for a model of terabytes is one refusal naming the file, not an
    allocation (or a MemoryError traceback)."""
    _, state = saved
    huge = tmp_path / "huge.pt"
    torch.save({**state, "config": {**state["config"], "width": 200_000}}, huge)
    with pytest.raises(GanError, match="huge.pt has G weight .* not the .* width 200000"):
        load_checkpoint(huge)


# -- ZIP archives ---------------------------------------------------------------------------------


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 12), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _central(data: bytes, name: bytes) -> int:
    """The offset of member `name`'s central directory header."""
    at = data.index(b"PK\x05\x06")  # end of central directory: where the directory starts
    offset = struct.unpack_from("<I", data, at + 16)[0]
    while data[offset : offset + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46 : offset + 46 + n] == name:
            return offset
        offset += 46 + n + m + k
    raise KeyError(name)


def patched(data: bytes, name: str, flag: int = 0, method: int | None = None, crc: int = 0):
    """The archive with member `name`'s headers changed, as zipfile cannot write them: flag bits
    or'ed in, its compression method replaced, its CRC xor'ed; the same in both headers."""
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        local = zf.getinfo(name).header_offset
    central = _central(data, name.encode())
    for at, (f, m, c) in ((local, (6, 8, 14)), (central, (8, 10, 16))):
        struct.pack_into("<H", buf, at + f, struct.unpack_from("<H", buf, at + f)[0] | flag)
        if method is not None:
            struct.pack_into("<H", buf, at + m, method)
        struct.pack_into("<I", buf, at + c, struct.unpack_from("<I", buf, at + c)[0] ^ crc)
    return bytes(buf)


def with_nul(data: bytes, name: str) -> bytes:
    """The name's '~' replaced by a NUL in both headers (zipfile cuts names at a NUL on write)."""
    raw = name.encode()
    return data.replace(raw, raw.replace(b"~", b"\0"))


def member(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o100644) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16 | (0x10 if stat.S_ISDIR(mode) else 0)
    zf.writestr(info, data)


# each kind of unreadable member: how to add it to a ZipFile, and how to spoil the bytes after
UNREADABLE = {
    "encrypted": (lambda zf, n: member(zf, n, png(99)), lambda d, n: patched(d, n, flag=0x1)),
    "method 99": (lambda zf, n: member(zf, n, png(98)), lambda d, n: patched(d, n, method=99)),
    "bad crc": (lambda zf, n: member(zf, n, png(97)), lambda d, n: patched(d, n, crc=0xFFFF)),
    "symlink": (lambda zf, n: member(zf, n, b"../../etc/passwd", stat.S_IFLNK | 0o777), None),
    "fifo": (lambda zf, n: member(zf, n, b"", stat.S_IFIFO | 0o644), None),
    "dir x.png/": (lambda zf, n: member(zf, n + "/", b"", stat.S_IFDIR | 0o755), None),
    "dir by mode": (lambda zf, n: member(zf, n, b"", stat.S_IFDIR | 0o755), None),
    "nul in name": (lambda zf, n: member(zf, n + "~.exe", png(96)), lambda d, n: with_nul(d, n)),
    "not an image": (lambda zf, n: member(zf, n, b"GIF89a but not really"), None),
}


def archive(path: Path, good: int, bad: tuple[str, ...], long_names: bool = False) -> Path:
    """A ZIP of `good` real PNGs (1,000-character names if long_names) and one member of each
    unreadable kind in `bad`, at every other position."""
    names = [f"img/{'n' * 990 if long_names else ''}good{i}.png" for i in range(good)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, kind in enumerate(bad):
            if i < len(names):
                member(zf, names[i], png(i))
            UNREADABLE[kind][0](zf, f"img/bad{i}.png")
        for i, name in enumerate(names[len(bad) :], len(bad)):
            member(zf, name, png(i))
    data = buf.getvalue()
    for i, kind in enumerate(bad):
        spoil = UNREADABLE[kind][1]
        if spoil is not None:
            data = spoil(data, f"img/bad{i}.png" + ("~.exe" if kind == "nul in name" else ""))
    path.write_bytes(data)
    return path


def zip_config(path: Path, **values):
    base = dict(dataset="zip", data_path=str(path), image_size=8, channels=1, device="cpu")
    return make_config({**base, **values})


def test_every_subset_of_unreadable_members_is_skipped_and_counted(tmp_path, caplog):
    kinds = sorted(UNREADABLE)
    runs = 0
    for r in range(len(kinds) + 1):
        for bad in itertools.combinations(kinds, r):
            for good in (0, 3):
                path = archive(tmp_path / f"a{runs}.zip", good, bad, long_names=runs % 2 == 1)
                runs += 1
                caplog.clear()
                if not good:
                    with pytest.raises(GanError) as e:
                        read_files(zip_config(path))
                    line = str(e.value)
                    assert line.startswith(f"no usable images in {path} ({len(bad)} unreadable)")
                    continue
                images, _, _, skipped = read_files(zip_config(path))
                assert images.shape == (good, 1, 8, 8) and skipped == len(bad), bad
                warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warned) == (1 if bad else 0), warned
    print(f"ZIP archives: {runs}")
    assert runs == 2 ** (len(kinds) + 1)


@pytest.mark.parametrize(
    "name", ["../x.png", "img/../../x.png", "/etc/x.png", "..\\x.png", "C:x.png"]
)
def test_traversal_names_refuse_the_archive_wherever_they_are(tmp_path, capsys, caplog, name):
    for at in range(3):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for i in range(3):
                member(zf, name if i == at else f"img/good{i}.png", png(i))
        path = tmp_path / f"t{at}.zip"
        path.write_bytes(buf.getvalue())
        argv = ["train", "--set", "dataset=zip", f"data_path={path}", "image_size=8", "channels=1"]
        argv += ["device=cpu", f"data_dir={tmp_path / 'data'}", "--out", str(tmp_path / "run")]
        err = refused(capsys, caplog, argv, path)
        assert "absolute or '..' path; refusing the archive" in err
        assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_zip_with_every_unreadable_kind_trains_on_the_rest(tmp_path, capsys, caplog):
    path = archive(tmp_path / "mixed.zip", 12, tuple(sorted(UNREADABLE)))
    argv = ["train", "--set", "dataset=zip", f"data_path={path}", "image_size=8", "channels=1"]
    argv += ["device=cpu", f"data_dir={tmp_path / 'data'}", "batch_size=4", "width=8"]
    argv += ["latent_dim=8", "epochs=1", "eval_every=-1", "sample_every=0", "holdout=0"]
    argv += ["arch=dcgan", "--out", str(tmp_path / "run")]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert f"skipped {len(UNREADABLE)} unreadable image file(s) in {path}" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    # and with nothing readable left: one line
    empty = archive(tmp_path / "empty.zip", 0, tuple(sorted(UNREADABLE)))
    argv[argv.index(f"data_path={path}")] = f"data_path={empty}"
    argv[-1] = str(tmp_path / "run2")
    refused(capsys, caplog, argv, empty)
