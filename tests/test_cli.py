"""The gan command: user errors are one line and a non-zero exit; a preset run writes outputs.

In-process through gan.cli.main (a subprocess costs seconds of imports); one smoke test runs the
installed console script."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gan.cli import main


def one_error_line(capsys) -> str:
    """The single `gan: error:` line on stderr (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("gan: error:")]
    assert len(errors) == 1, err
    return errors[0]


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
def test_user_errors_are_one_clear_line(args, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert named in one_error_line(capsys)


@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "serve", "tune", "final"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: gan {command}")


@pytest.mark.parametrize(
    ("args", "named"),
    [([], "the following arguments are required"), (["trian"], "invalid choice: 'trian'")],
)
def test_usage_errors_exit_2(args, named, capsys):
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gan") and named in err


def test_console_script_answers_at_once(tmp_path):
    # the installed `gan` script itself: a config error is one line, exit 2, and no torch import
    gan = shutil.which("gan", path=str(Path(sys.executable).parent))
    assert gan, "the gan console script is not installed: make install"
    done = subprocess.run(
        [gan, "train", "--set", "colour=red"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gan: error: unknown config key(s) colour;")
    assert len(done.stderr.splitlines()) == 1


def test_train_preset_then_rerun_resumes(tmp_path, fmnist_dir, capsys, caplog):
    common = [
        "--set",
        "limit=256",
        "width=8",
        "batch_size=64",
        "eval_every=-1",
        "device=cpu",
        f"data_dir={tmp_path / 'data'}",
    ]
    run = str(tmp_path / "run")
    assert main(["train", "--preset", "fmnist", *common, "epochs=1", "--out", run]) == 0
    assert "done: epoch 1" in capsys.readouterr().out
    # rerun on the same directory with more epochs: it resumes from its own saved config
    with caplog.at_level(logging.INFO):
        assert main(["train", "--out", run, "--set", "epochs=2"]) == 0
    assert "resumed" in caplog.text and "done: epoch 2" in capsys.readouterr().out


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
        "for cmd in ('train', 'evaluate', 'generate', 'serve', 'tune', 'final'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([cmd, '--help'])\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_evaluate_checks_classes_as_generate_does(tmp_path, shared_data_dir, fmnist_dir, capsys):
    from fixtures_data import tiny_config

    from gan.train import train

    run = tmp_path / "run"
    train(tiny_config(shared_data_dir, conditional=True, classes=(1, 7, 8)), run)
    capsys.readouterr()
    args = ["--check-classes", "--device", "cpu"]
    assert main(["evaluate", str(run), *args, "--samples", "16"]) == 0
    evaluated = capsys.readouterr().out.splitlines()
    assert evaluated[0].startswith("checking the classes of ") and "recognised" in evaluated[1]
    assert [line.split()[1] for line in evaluated[2:5]] == ["Trouser", "Sneaker", "Bag"]
    assert not (run / "evaluation.json").exists()  # a check, not a score
    assert main(["generate", str(run), *args, "--n", "16"]) == 0
    assert capsys.readouterr().out.splitlines() == evaluated[1:]  # the same table
    assert main(["evaluate", str(run), *args, "--samples", "1"]) == 2
    assert "--samples 1: check at least 2 images per class" in one_error_line(capsys)
