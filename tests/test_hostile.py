"""Hostile inputs and faults: each one is a single clear error (or a counted skip), never a
traceback, code run from a file, a lost checkpoint or unbounded memory (docs/hostile-inputs.md)."""

import os
from pathlib import Path

import pytest
import torch

from gan import extractors
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
    w = extractors.Weights(str(tmp_path / "wrong.pt"), "x", False)
    with pytest.raises(GanError, match=r"wrong\.pt has the wrong layout .*'fc\.weight'"):
        extractors.inception(w, torch.device("cpu"))
    del state["fc.weight"]
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(GanError, match=r"missing key 'fc\.weight'"):
        extractors.inception(w, torch.device("cpu"))


def test_no_weights_reach_a_full_unpickler(inception_weights, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    w = extractors.Weights(str(inception_weights), "x", False)
    fe = extractors.inception(w, torch.device("cpu"))
    assert calls and all(c is True for c in calls)
    x = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    assert extractors.extract(fe, x).shape == (2, 2048)


def test_crafted_cached_vgg_weights_run_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    crafted(cached, marker)
    with pytest.raises(GanError, match="VGG16 weights file .*not a plain weights file"):
        extractors.vgg(torch.device("cpu"))
    assert not marker.exists()


# -- ZIP bombs ----------------------------------------------------------------------------------


def fmnist_pngs(fmnist_dir: Path, n: int) -> list[bytes]:
    """The first n Fashion-MNIST test images as PNG files' bytes."""
    import gzip
    import io

    from PIL import Image

    with gzip.open(fmnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + n * 784)[16:]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.frombytes("L", (28, 28), raw[i * 784 : (i + 1) * 784]).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def image_zip(path: Path, fmnist_dir: Path, n: int = 40) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, png in enumerate(fmnist_pngs(fmnist_dir, n)):
            zf.writestr(f"img/{i}.png", png)
    return path


def zip_args(tmp_path: Path, archive: Path, *extra: str, out: str = "run") -> list[str]:
    return [
        "train",
        "--out",
        str(tmp_path / out),
        "--set",
        "dataset=zip",
        f"data_path={archive}",
        f"data_dir={tmp_path / 'data'}",
        "width=8",
        "latent_dim=16",
        "batch_size=8",
        "epochs=1",
        "eval_every=-1",
        "device=cpu",
        *extra,
    ]


def test_zip_bomb_member_is_refused_unread(tmp_path, fmnist_dir, capsys):
    import tracemalloc
    import zipfile

    archive = image_zip(tmp_path / "bomb.zip", fmnist_dir)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("img/bomb.png", "w", force_zip64=True) as f:  # 200 MiB of zeros, ~200 KB
            zeros = bytes(1 << 20)
            for _ in range(200):
                f.write(zeros)
    assert archive.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        code = main(zip_args(tmp_path, archive))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    one_error(capsys, "img/bomb.png", str(archive), "zip_member_max_bytes=134217728")
    assert peak < 64 << 20  # the member was never unpacked
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_zip_total_size_is_capped(tmp_path, fmnist_dir, capsys):
    archive = image_zip(tmp_path / "many.zip", fmnist_dir)
    assert main(zip_args(tmp_path, archive, "zip_max_bytes=5000")) == 2
    one_error(capsys, str(archive), "zip_max_bytes=5000")
    # within the caps, the same archive trains
    assert main(zip_args(tmp_path, archive, out="run2")) == 0


def test_zip_member_read_is_capped_while_reading(tmp_path, fmnist_dir):
    """Headers can lie: the cap holds on the bytes actually unpacked, in chunks."""
    import zipfile

    from gan.sources import _read_capped

    archive = image_zip(tmp_path / "one.zip", fmnist_dir, n=1)
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
        assert len(_read_capped(zf, info, 1 << 20, "zip_member_max_bytes")) == info.file_size
        with pytest.raises(GanError, match=r"img/0\.png.*more than zip_member_max_bytes=10 "):
            _read_capped(zf, info, 10, "zip_member_max_bytes")


# -- decompression-bomb images --------------------------------------------------------------------


def bomb_png(side: int = 30000) -> bytes:
    """A PNG whose header claims side x side pixels (900 M at 30000): a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(bytes(side + 1))  # one row; the rest is never reached
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_decompression_bomb_image_is_skipped_and_counted(kind, tmp_path, fmnist_dir, caplog):
    import zipfile

    pngs = [*fmnist_pngs(fmnist_dir, 16), bomb_png(), bomb_png(10000)]  # 10000: PIL only warns
    if kind == "folder":
        data_path = tmp_path / "imgs"
        data_path.mkdir()
        for i, png in enumerate(pngs):
            (data_path / f"{i:02d}.png").write_bytes(png)
    else:
        data_path = tmp_path / "imgs.zip"
        with zipfile.ZipFile(data_path, "w") as zf:
            for i, png in enumerate(pngs):
                zf.writestr(f"{i:02d}.png", png)
    args = zip_args(tmp_path, data_path, f"dataset={kind}", "holdout=0")
    assert main(args) == 0
    assert "skipped 2 unreadable image file(s)" in caplog.text and "16.png" in caplog.text


# -- unwritable output and a full disk ------------------------------------------------------------


def train_args(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    values = dict(limit=64, width=8, latent_dim=16, batch_size=32, eval_every=-1, device="cpu")
    return [
        "train",
        "--out",
        str(out),
        "--set",
        *(f"{k}={v}" for k, v in values.items()),
        f"data_dir={tmp_path / 'data'}",
        *extra,
    ]


def test_unwritable_out_dir_is_one_line(tmp_path, fmnist_dir, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run directory should go")
    assert main(train_args(tmp_path, blocker / "run", "epochs=1")) == 2
    one_error(capsys, str(blocker / "run"), "--out")
    # a read-only disk (root ignores chmod, so the refusal is simulated where it happens)
    ro = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(ro)):
            raise OSError(30, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(train_args(tmp_path, ro / "run", "epochs=1")) == 2
    one_error(capsys, str(ro / "run"), "Read-only file system", "writable")


def test_full_disk_during_a_checkpoint_keeps_the_last_one(
    tmp_path, fmnist_dir, capsys, monkeypatch
):
    import errno

    from gan import checkpoint as ck

    out = tmp_path / "run"
    assert main(train_args(tmp_path, out, "epochs=1")) == 0
    capsys.readouterr()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if isinstance(obj, dict) and "opt_g" in obj:  # only checkpoints: the disk fills there
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(train_args(tmp_path, out, "epochs=2")) == 2
    line = one_error(capsys, str(out / "checkpoints" / "ckpt_000002.pt"), "No space left")
    assert "MiB needed" in line and "ckpt_000001.pt is kept" in line
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["ckpt_000001.pt"]  # no partial file keeps the disk full
    assert ck.load_checkpoint(out / "checkpoints" / "ckpt_000001.pt")["epoch"] == 1
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same command resumes
    assert main(train_args(tmp_path, out, "epochs=2")) == 0
    assert "done: epoch 2" in capsys.readouterr().out


# -- gan serve addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--port", "99999"], "--port 99999"),
        (["--port", "-1"], "--port -1"),
        (["--host", "no.such.host.invalid"], "no.such.host.invalid"),
        (["--host", "999.1.1.1"], "999.1.1.1"),
        (["--host", "bad host"], "--host 'bad host'"),
        (["--max-count", "0"], "--max-count 0"),
    ],
)
def test_serve_bad_address_is_one_line(option, named, tmp_path, capsys):
    from gan import serve

    pytest.importorskip("uvicorn", reason="the optional extra: pip install 'gan[serve]'")
    if option[0] == "--host" and " " not in option[1]:  # resolved only when it listens
        with pytest.raises(GanError, match=named):
            serve.listen(option[1], 0)
        return
    if option[0] == "--port":  # listen() itself refuses it too (an OverflowError before)
        with pytest.raises(GanError, match=named):
            serve.listen("127.0.0.1", int(option[1]))
    assert main(["serve", str(tmp_path), *option]) == 2  # refused before any checkpoint loads
    one_error(capsys, named)


# -- SIGTERM ---------------------------------------------------------------------------------------


def test_sigterm_stops_train_like_ctrl_c_and_it_resumes(tmp_path, fmnist_dir, capsys):
    """A subprocess: SIGTERM's default action would end the test session itself."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = train_args(tmp_path, out, "epochs=1000", "limit=256")[1:]
    cmd = [sys.executable, "-m", "gan.cli", "train", *args]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list((out / "checkpoints").glob("ckpt_*.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "gan: stopped by SIGTERM;" in err and "rerun the same command to resume" in err
    from gan.checkpoint import latest_good

    epoch = latest_good(out)[1]["epoch"]
    assert epoch >= 1
    # the same command, with the end in sight, resumes where it stopped
    assert main(train_args(tmp_path, out, f"epochs={epoch + 1}", "limit=256")) == 0
    assert f"done: epoch {epoch + 1}" in capsys.readouterr().out


@pytest.mark.parametrize("job", ["tune", "final"])
def test_sigterm_stops_the_ray_jobs_like_ctrl_c(job, monkeypatch, capsys):
    import importlib
    import signal

    mod = importlib.import_module(f"jobs.{job}")

    def runs_until_stopped(*args, **kwargs):
        # the default action would end this test session: only send it to a handler
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the job")

    monkeypatch.setattr(mod, f"run_{job}", runs_until_stopped)
    argv = ["tune_configs/quick.yaml"] if job == "tune" else []
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or Ray's once a test started Ray here
    assert mod.main(argv) == 143
    err = capsys.readouterr().err
    assert f"{job}: stopped by SIGTERM; rerun the same command to resume" in err
    assert signal.getsignal(signal.SIGTERM) is before  # restored afterwards


# -- divergence and non-finite config values -------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", ".inf", "1e400", "1" + "0" * 400])
def test_non_finite_config_values_are_refused(value, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--set", f"lr_g={value}"]) == 2
    one_error(capsys, "'lr_g'")
    assert not (tmp_path / "run").exists()


def test_divergence_beyond_nan_exits_3_and_names_what_is_kept(tmp_path, fmnist_dir, capsys):
    out = tmp_path / "run"
    # lr 1e3: losses of ~1e14 from the first epoch, finite all along
    assert main(train_args(tmp_path, out, "epochs=3", "lr_g=1e3", "lr_d=1e3")) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "gan: run diverged at epoch 1; no checkpoint was kept" in err


def test_divergence_after_a_checkpoint_names_it(tmp_path, fmnist_dir, capsys, monkeypatch):
    from gan import train as train_module

    out = tmp_path / "run"
    assert main(train_args(tmp_path, out, "epochs=1")) == 0
    monkeypatch.setattr(train_module, "DIVERGE_LOSS", 1e-3)  # epoch 2 counts as diverged
    assert main(train_args(tmp_path, out, "epochs=2")) == 3
    err = capsys.readouterr().err
    assert f"diverged at epoch 2; {out / 'checkpoints' / 'ckpt_000001.pt'} is the last good" in err
    assert not (out / "checkpoints" / "ckpt_000002.pt").exists()


# -- logs after a resume, NaN and skipped files ----------------------------------------------------


def log_rows(out: Path) -> list[dict]:
    import json

    def strict(name):
        raise ValueError(f"{name} is not JSON")

    return [
        json.loads(x, parse_constant=strict) for x in (out / "log.jsonl").read_text().splitlines()
    ]


def test_resume_from_an_older_checkpoint_drops_the_lost_epochs(tmp_path, fmnist_dir):
    out = tmp_path / "run"
    assert main(train_args(tmp_path, out, "epochs=3")) == 0
    for epoch in (2, 3):  # e.g. a torn disk: only the epoch-1 checkpoint survives
        (out / "checkpoints" / f"ckpt_{epoch:06d}.pt").unlink()
    assert main(train_args(tmp_path, out, "epochs=3")) == 0
    assert [r["epoch"] for r in log_rows(out)] == [1, 2, 3]


def test_non_finite_numbers_are_logged_as_null(tmp_path):
    from gan.runlog import write_row

    write_row(tmp_path / "log.jsonl", {"epoch": 1, "d_loss": float("nan"), "g_loss": float("inf")})
    assert log_rows(tmp_path) == [{"epoch": 1, "d_loss": None, "g_loss": None}]


def test_skipped_files_are_reported_on_every_run(tmp_path, fmnist_dir, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, png in enumerate(fmnist_pngs(fmnist_dir, 16)):
        (folder / f"{i:02d}.png").write_bytes(png)
    (folder / "broken.png").write_bytes(b"not a png")
    for out in ("first", "second"):  # the second run reads the prepared cache
        caplog.clear()
        args = zip_args(tmp_path, folder, "dataset=folder", "holdout=0", out=out)
        assert main(args) == 0
        assert "1 unreadable image file(s)" in caplog.text, out
        assert all(r["skipped_files"] == 1 for r in log_rows(tmp_path / out))


# -- a failed start leaves no run behind ----------------------------------------------------------


def test_a_run_that_failed_on_its_data_is_not_resumed(tmp_path, fmnist_dir, capsys):
    archive = image_zip(tmp_path / "many.zip", fmnist_dir)
    assert main(zip_args(tmp_path, archive, "zip_max_bytes=5000")) == 2
    one_error(capsys, "zip_max_bytes=5000")
    assert not (tmp_path / "run" / "config.yaml").exists()
    # a folder with a config but no checkpoint (an older failed run) is a new run too
    (tmp_path / "run" / "config.yaml").write_text("zip_max_bytes: 5000\ndataset: zip\n")
    assert main(zip_args(tmp_path, archive)) == 0  # the corrected command trains
    assert "zip_max_bytes: 5000" not in (tmp_path / "run" / "config.yaml").read_text()


# -- the tune driver -------------------------------------------------------------------------------


def tune_spec_file(path: Path, data_dir: Path, **top) -> Path:
    import yaml

    base = dict(
        dataset="fashion_mnist",
        data_dir=str(data_dir),
        limit=256,
        batch_size=32,
        width=8,
        latent_dim=16,
        epochs=2,
        eval_every=1,
        metric="fd_domain",
        device="cpu",
    )
    base.update(top.pop("base", {}))
    spec = {"name": path.stem, "base": base, "resources": {"cpu": 1}, "seed": 0, **top}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def no_ray(monkeypatch):
    """jobs.tune with Ray's start replaced by a failure: what must fail before it, does."""

    import jobs.tune as jt

    def started(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(jt.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(jt.ray, "init", started)
    return jt


@pytest.mark.parametrize(
    ("base", "named"),
    [
        ({"dataset": "folder", "data_path": "/no/such/images"}, "/no/such/images"),
        ({"dataset": "mnist"}, "dataset 'mnist' could not be read or downloaded"),
        ({"metric": "fid", "fid_weights": "/no/such/weights.pth"}, "/no/such/weights.pth"),
    ],
)
def test_tune_checks_what_trials_need_before_ray_starts(base, named, tmp_path, fmnist_dir, no_ray):
    import time

    spec = tune_spec_file(tmp_path / "exp.yaml", tmp_path / "data", base=base)
    t0 = time.time()
    with pytest.raises(GanError, match=named.replace(".", r"\.")):
        no_ray.run_tune(str(spec), storage=str(tmp_path / "results"))
    assert time.time() - t0 < 30
    assert not (tmp_path / "results" / "exp" / "tune.yaml").exists()


def test_a_refused_start_does_not_block_the_corrected_config(
    tmp_path, fmnist_dir, no_ray, monkeypatch
):
    def no_gpu(spec, require_gpu=False):  # what a cluster without GPUs answers --require-gpu
        raise GanError("resources key 'gpu': trials ask for 1 GPU but the Ray cluster has none")

    monkeypatch.setattr(no_ray.ray, "init", lambda *a, **k: None)
    monkeypatch.setattr(no_ray, "check_resources", no_gpu)
    spec = tune_spec_file(tmp_path / "exp.yaml", tmp_path / "data", resources={"cpu": 1, "gpu": 1})
    with pytest.raises(GanError, match="'gpu'"):
        no_ray.run_tune(str(spec), storage=str(tmp_path / "results"), require_gpu=True)
    assert not (tmp_path / "results" / "exp" / "tune.yaml").exists()
    tune_spec_file(spec, tmp_path / "data", resources={"cpu": 1})  # the corrected config
    assert (
        no_ray.check_same_experiment(str(spec), "exp", str(tmp_path / "results" / "exp"))
        is not None
    )


def test_trials_csv_error_is_the_user_error_not_a_ray_actor():
    from jobs.tune_report import error_text

    class RayTaskError(Exception):  # how Ray wraps an exception raised in a trial
        def __init__(self, cause):
            super().__init__(
                "ray::ImplicitFunc.train() (pid=4242, ip=10.0.0.1, actor_id=ab12)\n"
                '  File "jobs/tune.py", line 90, in gan_trial\n'
                f"gan.config.GanError: {cause}"
            )
            self.cause = cause

    cause = GanError("data_path /data/imgs is not a folder; pass data_path=DIR with images")
    assert error_text(RayTaskError(cause)) == str(cause)
    assert error_text(RuntimeError("CUDA out of memory")) == "CUDA out of memory"


def interval_trial(config, exp_dir="", mode="min"):
    """A trainable that records when it runs (no training): for the concurrency limit."""
    import json
    import time

    from ray import tune

    start = time.time()
    time.sleep(1.5)
    trial = Path(tune.get_context().get_trial_dir()).name
    (Path(exp_dir) / f"{trial}.interval").write_text(json.dumps([start, time.time()]))
    tune.report({"epoch": 1, config["metric"]: 1.0})


@pytest.mark.ray
def test_max_concurrent_is_honoured(tmp_path, fmnist_dir, ray_session):
    import json
    import sys

    import ray.cloudpickle

    from jobs.tune import run_tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests
    spec = tune_spec_file(
        tmp_path / "limited.yaml",
        tmp_path / "data",
        search={"lr_g": {"grid_search": [1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4]}},
        scheduler={"type": "fifo"},
        resources={"cpu": 0.5},  # 4 would fit on this 2-CPU Ray at once
        max_concurrent=2,
    )
    run_tune(str(spec), storage=str(tmp_path), trainable=interval_trial)
    spans = [json.loads(p.read_text()) for p in (tmp_path / "limited").glob("*.interval")]
    assert len(spans) == 4
    for t in [s for s, _ in spans]:  # at each start, how many were running
        assert sum(1 for s, e in spans if s <= t < e) <= 2


@pytest.mark.ray
def test_a_user_error_in_a_trial_is_its_error_not_a_ray_traceback(
    tmp_path, tune_base, ray_session, caplog
):
    import csv

    from jobs.tune import run_tune

    spec = tune_spec_file(
        tmp_path / "usererr.yaml",
        Path(tune_base["data_dir"]),  # prepared once for the session's Ray tests
        base={"epochs": 1, "fid_samples": 64},
        search={"batch_size": {"grid_search": [32, 100000]}},  # 100000: more than the dataset
        scheduler={"type": "fifo"},
        max_failures=2,
    )
    run_tune(str(spec), storage=str(tmp_path))
    rows = {
        r["batch_size"]: r for r in csv.DictReader((tmp_path / "usererr" / "trials.csv").open())
    }
    assert rows["32"]["status"] == "completed" and rows["32"]["error"] == ""
    assert rows["100000"]["status"] == "failed"
    assert rows["100000"]["error"].startswith("dataset has 256 images, fewer than one batch")
    assert "Trial task failed" not in caplog.text  # no Ray traceback, and no pointless retries


def test_weights_without_batchnorm_counters_still_load(tmp_path, inception_weights):
    """Older files (the published ones among them) may lack num_batches_tracked: BatchNorm
    fills it in, so the layout check must not refuse them."""
    state = torch.load(inception_weights, weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pt")
    fe = extractors.inception(
        extractors.Weights(str(tmp_path / "old.pt"), "x", False), torch.device("cpu")
    )
    x = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    assert extractors.extract(fe, x).shape == (2, 2048)


def pid_trial(config, exp_dir="", mode="min"):
    """gan_trial that first writes its worker's pid, for a kill -9 from outside."""
    from ray import tune

    from jobs.trial import gan_trial

    trial = Path(tune.get_context().get_trial_dir()).name
    (Path(exp_dir) / f"{trial}.pid").write_text(str(os.getpid()))
    gan_trial(config, exp_dir, mode)


@pytest.mark.ray
@pytest.mark.slow  # ~20 s: three trials, one of them killed and retried
def test_a_trial_worker_killed_with_sigkill_is_retried_to_the_end(tmp_path, tune_base, ray_session):
    import signal
    import sys
    import threading
    import time

    import ray.cloudpickle

    from jobs.tune import run_tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests
    spec = tune_spec_file(
        tmp_path / "killed.yaml",
        Path(tune_base["data_dir"]),  # prepared once for the session's Ray tests
        base={"epochs": 3, "fid_samples": 64},
        search={"lr_g": {"grid_search": [1.0e-4, 2.0e-4, 3.0e-4]}},
        scheduler={"type": "fifo"},
        max_failures=2,
    )
    exp, killed = tmp_path / "killed", []

    def kill_one_worker():  # once a trial has a checkpoint, kill -9 its worker process
        while not tuned.is_set() and not killed:  # a loaded host may take minutes to get there
            for ckpt in exp.glob("*/checkpoints/ckpt_000001.pt"):
                pid_file = exp / f"{ckpt.parent.parent.name}.pid"
                if pid_file.exists():
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    killed.append(ckpt.parent.parent.name)
                    return
            time.sleep(0.2)

    tuned = threading.Event()
    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    try:
        rows = run_tune(str(spec), storage=str(tmp_path), trainable=pid_trial)
    finally:
        tuned.set()
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert all(r["epochs"] == 3 for r in rows)
