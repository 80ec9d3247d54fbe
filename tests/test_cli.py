"""The gan command: user errors are one line and a non-zero exit; a preset run writes outputs."""

import subprocess
import sys

import pytest


def gan(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gan.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--set", "epochs=ten"], "epochs"),
        (["train", "--set", "colour=red"], "colour"),
        (["train", "--preset", "nope"], "nope"),
        (["train", "--config", "missing.yaml"], "missing.yaml"),
        (["train", "--set", "dataset=folder", "data_path=/no/such/dir"], "/no/such/dir"),
        (["evaluate", "/no/such/run"], "/no/such/run"),
    ],
)
def test_user_errors_are_one_clear_line(args, named, tmp_path):
    r = gan(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1 and named in errors[0]


def test_train_preset_then_rerun_resumes(tmp_path, fmnist_dir):
    common = [
        "--set",
        "limit=256",
        "width=8",
        "batch_size=64",
        "eval_every=-1",
        "device=cpu",
        f"data_dir={tmp_path / 'data'}",
    ]
    r = gan("train", "--preset", "fmnist", *common, "epochs=1", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert "done: epoch 1" in r.stdout
    # rerun on the same directory with more epochs: it resumes from its own saved config
    r = gan("train", "--out", str(tmp_path / "run"), "--set", "epochs=2")
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr and "done: epoch 2" in r.stdout


def test_help_and_config_errors_import_no_torch():
    # torch takes seconds to import on a small machine: usage and config errors must not wait
    code = (
        "import sys, contextlib, io\n"
        "import gan.config\n"
        "assert 'torch' not in sys.modules, 'gan.config imports torch'\n"
        "from gan.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "    assert main(['train', '--set', 'colour=red']) == 2\n"
        "assert 'colour' in err.getvalue()\n"
        "for cmd in ('train', 'evaluate', 'generate', 'serve'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([cmd, '--help'])\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
