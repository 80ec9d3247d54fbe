"""The imports of gan/ and jobs/ form a DAG: gan is the library the Ray jobs depend on, jobs
reach it by name, and `gan tune`/`gan final` import a job only when it runs. Read from the
source with ast, function-level imports included, so that a cycle hidden in a function fails
here rather than as a half-initialised module at run time."""

import ast
import graphlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan", "jobs")


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the two packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imported(node: ast.AST, module: str) -> list[str]:
    """The module names an import statement names (`from a import b` names a and a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's own package
            parent = module.split(".")[: -node.level] if "." in module else [module]
            base = ".".join([*parent, *([base] if base else [])])
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def graph() -> dict[str, set[str]]:
    """Module -> the modules of gan/ and jobs/ it imports anywhere in its source. gan.cli also
    imports each subcommand's module by name (importlib): those count as its imports too."""
    known = modules()
    edges = {}
    for module, path in known.items():
        names = [
            n for node in ast.walk(ast.parse(path.read_text())) for n in imported(node, module)
        ]
        edges[module] = {n for n in names if n in known}
    from gan.cli import COMMANDS, RAY_JOBS

    edges["gan.cli"] |= {m for m, _, _ in COMMANDS.values() if isinstance(m, str)}
    edges["gan.cli"] |= {f"jobs.{job}" for job in RAY_JOBS}
    return edges


def module_level_imports(path: Path) -> set[str]:
    """Modules imported when the module itself is imported: outside every function and class
    (statements under a module-level if/try count)."""
    found = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        found.update(imported(node, ""))
        todo.extend(ast.iter_child_nodes(node))
    return found


def test_the_modules_of_gan_and_jobs_import_each_other_without_a_cycle():
    edges = graph()
    assert edges["gan.cli"] >= {"jobs.tune", "jobs.final"}  # the graph sees the lazy imports
    selfish = sorted(m for m, targets in edges.items() if m in targets)
    assert not selfish, f"modules that import themselves: {selfish}"
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_gan_imports_no_job_when_it_is_imported():
    for module, path in modules().items():
        if module.split(".")[0] == "gan":
            jobs = sorted(n for n in module_level_imports(path) if n.split(".")[0] == "jobs")
            assert not jobs, f"{module} imports {jobs} at module level"


def test_the_jobs_use_gan_as_a_library_not_its_command_line():
    # the error contract is gan.errors; gan.cli imports the jobs, so they must not import it
    for module, targets in graph().items():
        if module.split(".")[0] == "jobs":
            assert "gan.cli" not in targets and "gan.entrypoint" not in targets, module


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["tune", "--help"]])
def test_help_imports_no_ray_and_answers_at_once(argv):
    # Ray takes seconds to import (and torch more): the parser and --help need neither
    code = (
        "import sys, contextlib, io\n"
        "from gan.cli import build_parser, main\n"
        "build_parser()\n"
        "assert 'ray' not in sys.modules, 'building the parser imports ray'\n"
        f"with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        "assert out.getvalue().startswith('usage: gan'), out.getvalue()\n"
        "heavy = sorted(m for m in ('ray', 'torch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_trial_and_a_run_start_without_torchvision_or_torch_fidelity():
    # torch-fidelity's package imports torchvision (and torchvision torch._dynamo, which a
    # training run's first optimizer imports anyway): only FID, KID and the VGG features need them
    code = (
        "import sys\n"
        "import jobs.trial, gan.train, gan.metrics, gan.evaluate, gan.generate, gan.serve\n"
        "heavy = sorted(m for m in ('torchvision', 'torch_fidelity', 'torch._dynamo')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_console_script_s_help_is_fast():
    gan = Path(sys.executable).parent / "gan"
    assert gan.exists(), "the gan console script is not installed: make install"
    t0 = time.time()
    done = subprocess.run([str(gan), "--help"], capture_output=True, text=True, cwd=ROOT)
    took = time.time() - t0
    assert done.returncode == 0 and "tune" in done.stdout and "final" in done.stdout
    assert took < 5, f"gan --help took {took:.1f} s"  # ~0.1 s alone; Ray or torch would be seconds
