"""The tune job: search space, ASHA, a killed driver resumed, kill -9 of workers mid-epoch,
mid-checkpoint or mid-evaluation and the rerun that finishes the experiment, retries, best.yaml."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gan.best import best_config
from gan.config import GanError, make_config, to_dict
from jobs.tune_report import DIVERGED
from jobs.tune_spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def write_spec(path: Path, base: dict, **top) -> Path:
    spec = {"metric": "fd_domain", "base": base, "resources": {"cpu": 1}, "seed": 0, **top}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -- search space (no Ray session) -------------------------------------------------------------


def test_search_space_translation(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer

    spec = parse_spec(
        {
            "base": {"epochs": 4, "eval_every": 1, "data_dir": "data"},
            "search": {
                "arch": {"grid_search": ["baseline", "dcgan"]},
                "loss": {"choice": ["bce", "hinge"]},
                "lr_g": {"loguniform": ["1e-4", 1.0e-3]},  # PyYAML's string 1e-4 is coerced
                "beta1": {"uniform": [0.0, 0.9]},
                "latent_dim": {"randint": [16, 65]},
                "classes": {"choice": [[0, 1], "2,3"]},
            },
            "scheduler": {"grace_period": 2, "reduction_factor": 3, "max_t": 4},
            "resources": {"cpu": 2, "gpu": 0.25},
        },
        "exp",
    )
    s = spec.search
    assert s["arch"] == {"grid_search": ["baseline", "dcgan"]}
    assert isinstance(s["loss"], Categorical) and s["loss"].categories == ["bce", "hinge"]
    assert isinstance(s["lr_g"], Float) and (s["lr_g"].lower, s["lr_g"].upper) == (1e-4, 1e-3)
    assert isinstance(s["beta1"], Float) and isinstance(s["latent_dim"], Integer)
    assert s["classes"].categories == [[0, 1], [2, 3]]
    space = spec.param_space()
    assert set(space) == set(to_dict(make_config({})))  # every trial gets a complete config
    assert Path(space["data_dir"]).is_absolute()  # trials run in their own working directory
    assert spec.name == "exp" and spec.metric == "fid" and spec.mode == "min"
    assert spec.scheduler == {
        "type": "asha",
        "grace_period": 2,
        "reduction_factor": 3.0,
        "max_t": 4,
    }
    assert (spec.cpu, spec.gpu) == (2.0, 0.25)


@pytest.mark.parametrize(
    "top, key",
    [
        ({"search": {"lr": {"choice": [1.0e-4]}}}, "'lr'"),
        ({"search": {"arch": {"choice": ["stylegan"]}}}, "'arch'"),
        ({"search": {"loss": {"uniform": [0, 1]}}}, "'loss'"),
        ({"search": {"lr_g": {"loguniform": [0.0, 1.0e-3]}}}, "'lr_g'"),
        ({"search": {"lr_g": {"loguniform": ["fast", 1.0e-3]}}}, "'lr_g'"),
        ({"search": {"beta1": {"uniform": [0.5, 1.5]}}}, "'beta1'"),
        ({"search": {"width": {"randint": [8.5, 16]}}}, "'width'"),
        ({"search": {"width": [8, 16]}}, "'width'"),
        ({"search": {"metric": {"choice": ["fid"]}}}, "'metric'"),
        ({"base": {"eval_every": 1, "lr_g": "x"}}, "'lr_g'"),
        ({"base": {"eval_every": 0}}, "'eval_every'"),
        ({"scheduler": {"max_t": 99}}, "'max_t'"),
        ({"scheduler": {"grace": 1}}, "grace"),
        ({"scheduler": {"reduction_factor": 1}}, "'reduction_factor'"),
        ({"resources": {"gpu": 1.5}}, "'gpu'"),
        ({"num_samples": 0}, "'num_samples'"),
        ({"mode": "lowest"}, "'mode'"),
        ({"metric": "fid", "base": {"eval_every": 1, "metric": "fd_domain"}}, "'metric'"),
        ({"samples": 4}, "samples"),
    ],
)
def test_search_space_errors(top, key):
    data = {"base": {"eval_every": 1}, **top}
    with pytest.raises(GanError, match=key):
        parse_spec(data, "exp")


def test_shipped_tune_configs_are_valid():
    names = sorted(p.stem for p in (ROOT / "tune_configs").glob("*.yaml"))
    assert {"fmnist", "quick", "cifar10", "folder"} <= set(names)
    fmnist = load_spec(ROOT / "tune_configs" / "fmnist.yaml")
    grid = 1
    for rule in fmnist.search.values():
        grid *= len(rule["grid_search"]) if isinstance(rule, dict) else 1
    assert grid * fmnist.num_samples >= 24 and fmnist.gpu == 0.25 and fmnist.metric == "fid"
    assert {"width", "lr_g", "lr_d", "diffaug", "r1_gamma"} <= set(fmnist.search)
    # it starts from the measured fmnist preset: every recipe key it does not search is the
    # preset's (the run length, evaluation and searched keys aside)
    from gan.config import preset_values

    preset = preset_values("fmnist")
    own = {"name", "epochs", "eval_every", "metric", "fid_samples", *fmnist.search}
    assert {k: v for k, v in preset.items() if k not in own} == {
        k: fmnist.base[k] for k in preset if k not in own
    }
    # the template for your own images starts from the small preset and searches the
    # limited-data techniques
    folder = load_spec(ROOT / "tune_configs" / "folder.yaml")
    small = preset_values("small")
    own = {"name", "epochs", "eval_every", "sample_every", "checkpoint_every", "metric"}
    own |= {"fid_samples", "data_path", *folder.search}
    assert {k: v for k, v in small.items() if k not in own} == {
        k: folder.base[k] for k in small if k not in own
    }
    assert {"diffaug", "ada_target", "lecam", "r1_gamma"} <= set(folder.search)
    cifar = load_spec(ROOT / "tune_configs" / "cifar10.yaml")
    assert any("color" in p for p in cifar.search["diffaug"].categories)
    for name in names:
        load_spec(ROOT / "tune_configs" / f"{name}.yaml")


def test_best_config_without_experiment(tmp_path):
    with pytest.raises(GanError, match="no tune experiment"):
        best_config(results=tmp_path)
    with pytest.raises(GanError, match="best.yaml"):
        best_config(tmp_path)


def test_diverged_report_keeps_a_usable_metric(monkeypatch):
    from ray import tune

    from jobs.trial import make_report

    seen = []
    monkeypatch.setattr(tune, "report", lambda row, checkpoint=None: seen.append(row))
    make_report("fid", "min")({"epoch": 3, "fid": float("inf"), "diverged": True, "x": [1]}, None)
    assert seen == [{"epoch": 3, "fid": DIVERGED, "diverged": True}]


def test_asha_rungs_survive_restore(tmp_path):
    import pyarrow.fs as pafs

    from jobs.search import ResumableASHA

    asha = ResumableASHA(time_attr="epoch", metric="fid", mode="min", max_t=4, grace_period=1)
    rows = [{"epoch": 1, "fid": 50.0}, {"epoch": 2, "fid": 40.0}]
    (tmp_path / "result.json").write_text("\n".join(json.dumps(r) for r in rows))
    fs = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem())
    done = SimpleNamespace(trial_id="done", path=str(tmp_path), storage=fs)
    new = SimpleNamespace(trial_id="new", path=str(tmp_path / "none"), storage=fs)
    asha.on_trial_add(None, done)  # a finished trial of the interrupted run
    asha.on_trial_add(None, new)
    assert asha.on_trial_result(None, new, {"epoch": 1, "fid": 90.0}) == "STOP"


def test_resuming_from_another_tune_config_is_refused(tmp_path):
    from jobs.tune import check_same_experiment, remember_experiment

    spec = write_spec(tmp_path / "a.yaml", {"eval_every": 1}, name="a")
    remember_experiment(
        str(tmp_path / "a"), check_same_experiment(str(spec), "a", str(tmp_path / "a"))
    )
    assert check_same_experiment(str(spec), "a", str(tmp_path / "a")) is None  # the same resumes
    write_spec(spec, {"eval_every": 2}, name="a")
    with pytest.raises(GanError, match="--name"):
        check_same_experiment(str(spec), "a", str(tmp_path / "a"))


@pytest.mark.ray
def test_trials_fit_the_cluster(ray_session, capsys):
    from jobs.tune import check_resources

    spec = parse_spec({"base": {"eval_every": 1}, "resources": {"cpu": 1, "gpu": 0.25}}, "x")
    fitted = check_resources(spec)  # this cluster has no GPU: the trials run on the CPU
    assert fitted.gpu == 0 and "no GPU" in capsys.readouterr().out
    with pytest.raises(GanError, match="'gpu'"):
        check_resources(spec, require_gpu=True)
    with pytest.raises(GanError, match="'cpu'"):  # would stay PENDING forever on 2 CPUs
        check_resources(parse_spec({"base": {"eval_every": 1}, "resources": {"cpu": 3}}, "x"))


# -- the command lines (no Ray session) ---------------------------------------------------------


@pytest.mark.parametrize("job", ["tune", "final"])
def test_gan_job_and_python_jobs_job_take_the_same_options(job, capsys):
    import importlib

    from gan.cli import main

    helps = []
    for run in (importlib.import_module(f"jobs.{job}").main, lambda argv: main([job, *argv])):
        with pytest.raises(SystemExit) as done:
            run(["--help"])
        assert done.value.code == 0
        helps.append(" ".join(capsys.readouterr().out.split()))  # unwrapped
    assert helps[0].startswith(f"usage: python jobs/{job}.py") and f"gan {job}" in helps[0]
    assert helps[1].startswith(f"usage: gan {job}") and f"python jobs/{job}.py" in helps[1]
    options = [h.split("options:")[1] for h in helps]
    assert options[0] == options[1] and "--require-gpu" in options[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["tune", "missing.yaml"], "missing.yaml"),
        (["final", "--from", "no-such-experiment"], "gan tune tune_configs/quick.yaml"),
    ],
)
def test_the_jobs_answer_a_user_error_in_one_line(argv, named, tmp_path):
    """`gan tune|final` and the scripts `ray job submit` runs: one line, exit 2, before Ray (and
    torch) are imported: -X importtime lists every module a process imports on stderr."""
    gan = Path(sys.executable).parent / "gan"
    job, *rest = argv
    for cmd, prog in (
        ([sys.executable, "-X", "importtime", gan, *argv], "gan"),
        ([sys.executable, "-X", "importtime", ROOT / "jobs" / f"{job}.py", *rest], job),
    ):
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        lines = done.stderr.splitlines()
        imported = {x.rsplit("|", 1)[1].strip() for x in lines if x.startswith("import time:")}
        said = [x for x in lines if not x.startswith("import time:")]
        assert done.returncode == 2 and "Traceback" not in done.stderr, said
        (line,) = [x for x in said if "error" in x]
        assert line.startswith(f"{prog}: error: ") and named in line
        assert "gan.config" in imported and not imported & {"ray", "torch"}, prog
    assert not (tmp_path / "results").exists()


def test_gan_tune_and_final_check_their_config_before_importing_ray_or_torch(tmp_path):
    """A config error costs a user a fraction of a second, not Ray's and torch's imports."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: {widht: 8}\nsearch: {}\n")
    code = (
        "import sys; from gan.cli import main; rc = main(sys.argv[1:]); "
        "print(rc, 'ray' in sys.modules, 'torch' in sys.modules)"
    )
    for argv, named in (
        (["tune", "missing.yaml"], "missing.yaml"),
        (["tune", str(bad)], "widht"),
        (["final", "--from", "no-such-experiment"], "no-such-experiment"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.stdout.split() == ["2", "False", "False"], done.stderr
        assert named in done.stderr


# -- Ray -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asha_run(tmp_path_factory, tune_base, ray_session):
    """A 4-trial ASHA experiment, run once for the tests below."""
    from jobs.tune import run_tune

    tmp = tmp_path_factory.mktemp("asha")
    spec = write_spec(
        tmp / "asha.yaml",
        tune_base,
        name="asha",
        search={"lr_g": {"grid_search": [1.0e-4, 5.0e-4, 2.0e-3, 1.0e-2]}},
        # one trial at a time makes ASHA's decisions deterministic; reduction factor 4 keeps only
        # trials in the top quarter at epoch 1, so all four survive only if each beats the rest
        max_concurrent=1,
        scheduler={"grace_period": 1, "reduction_factor": 4, "max_t": 3},
    )
    t0 = time.time()
    rows = run_tune(str(spec), storage=str(tmp / "results"))
    return rows, tmp / "results" / "asha", time.time() - t0


@pytest.mark.ray
def test_asha_stops_weak_trials_and_writes_results(asha_run):
    rows, exp, _ = asha_run
    assert len(rows) == 4
    statuses = [r["status"] for r in rows]
    assert "stopped" in statuses and "completed" in statuses
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert all(r["epochs"] < 3 for r in stopped)
    table = (exp / "trials.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("trial,status,fd_domain,best_epoch,epochs,lr_g")
    winner = make_config(yaml.safe_load((exp / "best.yaml").read_text()))
    assert winner.lr_g == rows[0]["lr_g"] and winner.limit == 256 and winner.width == 8
    assert (exp / "comparison.png").stat().st_size > 1000
    run = exp / rows[0]["trial"]  # train() wrote straight into the trial dir on storage
    assert (run / "log.jsonl").is_file() and list((run / "samples").glob("epoch_*.png"))
    events = list(run.glob("events.out.tfevents.*"))
    assert any(b"_hparams_" in p.read_bytes() for p in events)  # TensorBoard's HParams view
    assert list(run.glob("checkpoint_*/checkpoint.pt"))  # Ray's kept checkpoints


@pytest.mark.ray
def test_best_yaml_feeds_train_best(asha_run, tmp_path):
    from gan.cli import main

    rows, exp, _ = asha_run
    out = tmp_path / "final"
    argv = [
        "train",
        "--best",
        "--from",
        str(exp),
        "--set",
        "epochs=1",
        "eval_every=-1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    cfg = make_config(yaml.safe_load((out / "config.yaml").read_text()))
    winner = best_config(exp)
    final = {"sample_every": 10, "checkpoint_every": 10, "epochs": 1, "eval_every": -1}
    assert to_dict(cfg) == {**to_dict(winner), **final}
    epochs = [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert epochs == [1]  # a fresh run from epoch 0, not a resumed trial


@pytest.mark.ray
def test_gan_tune_resumes_a_finished_experiment_without_rerunning_it(asha_run, capsys):
    import ray

    from gan.cli import main

    _, exp, _ = asha_run
    logs = {p: p.stat().st_mtime_ns for p in exp.glob("*/log.jsonl")}
    argv = ["tune", str(exp.parent.parent / "asha.yaml"), "--storage", str(exp.parent)]
    assert main(argv) == 0
    assert f"resuming experiment {exp}" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in exp.glob("*/log.jsonl")} == logs  # nothing reran
    assert ray.is_initialized()  # a Ray the job did not start stays up


def flaky_trial(config, exp_dir="", mode="min"):
    """gan_trial whose first attempt dies at its epoch-2 report, losing its local checkpoints."""
    from ray import tune

    from jobs.trial import gan_trial

    marker = Path(exp_dir) / "crashed_once"
    if not marker.exists():
        real = tune.report

        def report(metrics, checkpoint=None):
            if metrics["epoch"] < 2 or marker.exists():  # a reused actor keeps this patch
                return real(metrics, checkpoint=checkpoint)
            marker.write_text("1")
            run_dir = Path(exp_dir) / Path(tune.get_context().get_trial_dir()).name
            shutil.rmtree(run_dir / "checkpoints")  # as if the retry landed on a fresh node
            raise RuntimeError("injected crash")

        tune.report = report
    gan_trial(config, exp_dir, mode)


@pytest.mark.ray
def test_crashed_trial_is_retried_from_its_checkpoint(tmp_path, tune_base, ray_session):
    import ray.cloudpickle

    from jobs.tune import run_tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests
    spec = write_spec(
        tmp_path / "flaky.yaml", tune_base, name="flaky", max_failures=1, scheduler={"type": "fifo"}
    )
    rows = run_tune(str(spec), storage=str(tmp_path), trainable=flaky_trial)
    assert (tmp_path / "flaky" / "crashed_once").exists()
    assert [r["status"] for r in rows] == ["completed"]
    log = (tmp_path / "flaky" / rows[0]["trial"] / "log.jsonl").read_text().splitlines()
    epochs = [json.loads(x)["epoch"] for x in log if json.loads(x)["kind"] == "epoch"]
    assert epochs == [1, 2, 3]  # one history: the row of the lost epoch 2 is dropped on resume
    results = (tmp_path / "flaky" / rows[0]["trial"] / "result.json").read_text().splitlines()
    reported = [json.loads(x)["epoch"] for x in results]
    assert reported == [1, 2, 3]  # epoch 2 redone from Ray's epoch-1 checkpoint, not from scratch


def _terminated(exp: Path) -> list[str]:
    """Trial ids the experiment state (as last saved by the driver) records as finished."""
    ids = []
    for state in exp.glob("experiment_state-*.json"):
        try:
            for trial_json, _ in json.loads(state.read_text())["trial_data"]:
                trial = json.loads(trial_json)
                if trial["status"] == "TERMINATED":
                    ids.append(trial["trial_id"])
        except (json.JSONDecodeError, KeyError):
            pass  # being rewritten
    return ids


# the tune command, its trials' function swapped for tests/chaos.py's parking one
CHAOS_DRIVER = (
    "import functools, sys, chaos, ray.cloudpickle\n"
    "from jobs import tune\n"
    "ray.cloudpickle.register_pickle_by_value(chaos)\n"
    "tune.run_tune = functools.partial(tune.run_tune, trainable=chaos.park_trial)\n"
    "sys.exit(tune.main(sys.argv[1:]))\n"
)


@pytest.mark.ray
@pytest.mark.slow  # ~45 s: two drivers and four trials
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, tune_base, ray_session):
    """The driver is killed -9 while three trials are parked in their second epoch: one mid-epoch,
    one mid-checkpoint, one mid-evaluation; a fourth has finished. Each parked trial's older Ray
    checkpoint was just dropped but the experiment state not yet saved (the state names a
    checkpoint that is gone). The same command finishes the experiment."""
    import chaos

    lrs = [*chaos.PHASE_OF_LR, 2e-3]  # three parked trials, one that runs through
    spec = _chaos_spec(
        tmp_path, tune_base, search={"lr_g": {"grid_search": lrs}}, resources={"cpu": 0.5}
    )
    env = {
        **os.environ,
        "RAY_ADDRESS": ray_session,
        "TUNE_GLOBAL_CHECKPOINT_S": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    cmd = [sys.executable, "-c", CHAOS_DRIVER, str(spec), "--storage", str(tmp_path)]
    exp = tmp_path / "chaos"
    driver = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # kill once the state records the finished trial and names each parked one's checkpoint
        deadline = time.time() + 300  # a loaded host needs minutes
        while time.time() < deadline and driver.poll() is None:
            done = len(_terminated(exp)) == 1 and len(_named_checkpoints(exp)) == 3
            if done and len(chaos.parked(exp)) == 3:
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the driver ended before it could be killed"
        os.killpg(driver.pid, signal.SIGKILL)
        for pid in chaos.parked(exp).values():
            os.kill(pid, signal.SIGKILL)  # Ray ends a dead driver's workers; do not wait for it
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    _wait_quiet(exp)
    finished = _terminated(exp)
    assert len(finished) == 1 and not (exp / "best.yaml").exists()
    # the kill landed where Ray had registered each trial's next checkpoint and deleted the one
    # before it, but had not yet saved the experiment state: the state names lost checkpoints
    named = _named_checkpoints(exp)
    for path in named.values():
        path.rename(path.with_name(f"checkpoint_{int(path.name.split('_')[1]) + 1:06d}"))
    before = {t: (exp / t / "result.json").read_text() for t in finished}
    kept = {t: _rows_upto(exp / t, _last_ckpt(exp / t)) for t in named}  # rows to its checkpoint
    assert all(kept.values())
    assert len(list(exp.glob("*/checkpoints/.ckpt_000002.pt.tmp*"))) == 1  # cut mid-checkpoint
    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming experiment" in rerun.stdout
    _assert_recovered(exp, 4)
    for t, text in before.items():  # the finished trial was not run again
        assert (exp / t / "result.json").read_text() == text
    for t, path in named.items():  # each went on from its own checkpoint; its rows stand
        assert f"trial {t}: checkpoint {path} is gone" in rerun.stdout
        assert (exp / t / "log.jsonl").read_text().splitlines()[: len(kept[t])] == kept[t]
    assert (exp / "best.yaml").is_file()


def _named_checkpoints(exp: Path) -> dict[str, Path]:
    """Unfinished trial id -> the latest checkpoint folder the last saved experiment state names
    (Ray pickles each trial's checkpoint manager into the state's JSON)."""
    import binascii

    import cloudpickle

    states = sorted(exp.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    try:
        data = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (json.JSONDecodeError, KeyError, FileNotFoundError):
        return {}  # being rewritten
    named = {}
    for trial_json, runtime_json in data:
        trial = json.loads(trial_json)
        if trial["status"] != "TERMINATED":
            value = json.loads(runtime_json)["checkpoint_manager"]["value"]
            latest = cloudpickle.loads(binascii.unhexlify(value))._latest_checkpoint_result
            if latest is not None:
                named[trial["trial_id"]] = Path(latest.checkpoint.path)
    return named


def _assert_recovered(exp: Path, n: int) -> None:
    """Every trial completed in trials.csv, one history each (epochs 1-3 logged once and reported
    once), no partial file left, and every checkpoint loads."""
    from gan import checkpoint as ck

    rows = list(csv_rows(exp / "trials.csv"))
    assert len(rows) == n and {r["status"] for r in rows} == {"completed"}, rows
    for r in rows:
        run = exp / r["trial"]
        assert _epochs(run) == [1, 2, 3]
        assert not list((run / "checkpoints").glob(ck.PARTIAL_GLOB))
        for path in ck.numbered(run):
            assert ck.load_checkpoint(path)["epoch"] == int(path.stem.split("_")[1])
    assert (exp / "best.yaml").is_file()


def _chaos_spec(tmp_path: Path, base: dict, **top) -> Path:
    """The kill -9 tests' experiment `chaos`: one trial per parking point (tests/chaos.py),
    unless `search` says which learning rates (those not in chaos.PHASE_OF_LR run through)."""
    import chaos

    fifo = {"type": "fifo"}
    top = {"search": {"lr_g": {"grid_search": list(chaos.PHASE_OF_LR)}}, "scheduler": fifo, **top}
    return write_spec(tmp_path / "chaos.yaml", base, name="chaos", **top)


@pytest.mark.ray
@pytest.mark.slow  # ~20 s: three trials, each worker killed once, then the same command again
def test_workers_killed_mid_epoch_checkpoint_and_evaluation_finish_on_a_rerun(
    tmp_path, tune_base, ray_session
):
    import threading

    import chaos
    import ray.cloudpickle

    from jobs.tune import run_tune

    ray.cloudpickle.register_pickle_by_value(chaos)  # workers can't import tests
    spec = _chaos_spec(tmp_path, tune_base, max_failures=0)  # no Ray retry: the rerun recovers
    exp, killed, done = tmp_path / "chaos", {}, threading.Event()

    def kill_parked():  # kill -9 each worker where it parked, and note how far its run had got
        while not done.is_set():
            for trial, pid in chaos.parked(exp).items():
                if trial not in killed:
                    killed[trial] = _last_ckpt(exp / trial)
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_parked, daemon=True)
    killer.start()
    try:
        first = run_tune(str(spec), storage=str(tmp_path), trainable=chaos.park_trial)
    finally:
        done.set()
        killer.join(timeout=5)
    assert len(killed) == 3 and {r["status"] for r in first} == {"failed"}
    # every kill came after the epoch-1 checkpoint, before epoch 2's: at most that epoch is lost
    assert set(killed.values()) == {chaos.PARK_EPOCH - 1}
    partial = list(exp.glob("*/checkpoints/.ckpt_000002.pt.tmp*"))
    assert len(partial) == 1  # the checkpoint the kill cut in half, until the rerun clears it
    run_tune(str(spec), storage=str(tmp_path), trainable=chaos.park_trial)
    _assert_recovered(exp, 3)
    for trial in killed:  # Ray's epoch-1 checkpoint resumed each: epoch 2 redone, not 1 and 2
        results = (exp / trial / "result.json").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in results] == [1, 2, 3]


def _epochs(run: Path) -> list[int]:
    if not (run / "log.jsonl").exists():
        return []
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [r["epoch"] for r in rows if r["kind"] == "epoch"]


def _rows_upto(run: Path, epoch: int) -> list[str]:
    """The run's log.jsonl lines of epochs up to `epoch` (a torn last line is left out)."""
    if not (run / "log.jsonl").exists():
        return []
    rows = []
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                rows.append(line)
        except (ValueError, KeyError):
            pass
    return rows


def _last_ckpt(run: Path) -> int:
    from gan.checkpoint import numbered

    found = numbered(run)
    return int(found[-1].stem.split("_")[1]) if found else 0


def _wait_quiet(folder: Path, quiet: float = 3.0, limit: float = 30.0) -> None:
    """Wait until no file under folder has changed for `quiet` seconds."""
    start = time.time()
    while time.time() - start < limit:
        newest = max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0)
        if time.time() - newest > quiet:
            return
        time.sleep(0.5)


def csv_rows(path: Path):
    import csv

    with open(path) as f:
        yield from csv.DictReader(f)


def test_a_local_ray_starts_with_owner_only_token_authentication(tmp_path, monkeypatch):
    import stat

    from jobs import raylocal as tune_mod

    token = tmp_path / ".ray" / "auth_token"
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    started, reloaded = [], []
    monkeypatch.setattr(tune_mod, "reload_ray_config", lambda: reloaded.append(1))
    monkeypatch.setattr(tune_mod.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(tune_mod.ray, "init", lambda: started.append(os.environ["RAY_AUTH_MODE"]))
    tune_mod.start_ray()
    assert started == ["token"] and reloaded == [1]  # Ray read the mode before it was set
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
    secret = token.read_text()
    token.chmod(0o644)  # as Ray 2.60 writes its own token file
    tune_mod.start_ray()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == secret
    token.unlink()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's choice is kept
    tune_mod.start_ray()
    assert started[-1] == "disabled" and not token.exists()
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster decides for itself
    monkeypatch.setattr(
        tune_mod.ray, "init", lambda: started.append(os.environ.get("RAY_AUTH_MODE"))
    )
    tune_mod.start_ray()
    assert started[-1] is None and not token.exists()


@pytest.mark.ray
def test_the_tests_local_ray_checks_an_owner_only_token(ray_session):
    import stat

    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert get_authentication_mode() == AuthenticationMode.TOKEN  # as jobs.raylocal.start_ray does
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
