"""The cluster files agree with the image and the tune job; a two-node Ray runs the tune job."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "jobs" / "cluster"


def rayjob() -> dict[str, dict]:
    """The documents of rayjob.yaml by kind: PersistentVolumeClaim, RayJob, Pod."""
    return {d["kind"]: d for d in yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())}


def ray_cluster() -> dict:
    return yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())


def pods() -> dict[str, dict]:
    """{"head" or a worker group's name: its pod spec} in the RayJob's cluster."""
    spec = rayjob()["RayJob"]["spec"]["rayClusterSpec"]
    out = {"head": spec["headGroupSpec"]["template"]["spec"]}
    for group in spec["workerGroupSpecs"]:
        out[group["groupName"]] = group["template"]["spec"]
    return out


def tune_args() -> tuple[str, str]:
    """(tune config, --storage) of the RayJob's `python jobs/tune.py CONFIG --storage PATH`."""
    argv = shlex.split(rayjob()["RayJob"]["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/tune.py"], argv
    return argv[2], argv[argv.index("--storage") + 1]


def image_user() -> tuple[str, str]:
    """(uid, gid) of the Dockerfile's last USER."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert users, "the Dockerfile's USER must be numeric uid:gid"
    return users[-1]


# -- the manifests ----------------------------------------------------------------------------


def test_one_image_everywhere():
    built = re.search(r"docker build -t (\S+)", (ROOT / "Makefile").read_text()).group(1)
    built = built if ":" in built else f"{built}:latest"
    images = {c["image"] for spec in pods().values() for c in spec["containers"]}
    images.add(ray_cluster()["docker"]["image"])
    images.add(rayjob()["Pod"]["spec"]["containers"][0]["image"])
    assert images == {built}


def test_tensorboard_pod_reads_the_results_volume():
    pod = rayjob()["Pod"]["spec"]
    _, storage = tune_args()
    (container,) = pod["containers"]
    assert container["command"][:3] == ["tensorboard", "--logdir", storage]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == storage]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == "gan-results"
    assert str(pod["securityContext"]["fsGroup"]) == image_user()[1]


def test_rayjob_runs_the_tune_job_on_one_shared_volume():
    config, storage = tune_args()
    assert (ROOT / config).is_file() and config.startswith("tune_configs/")
    assert storage.startswith("/")  # Ray Tune needs an absolute storage_path
    claims = set()
    for name, spec in pods().items():
        # the driver (head) and the trials (workers) must see the same files at the same path
        (container,) = spec["containers"]
        mounts = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == storage}
        assert mounts, f"{name} does not mount {storage}"
        claims |= {
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if v["name"] in mounts
        }
        assert str(spec["securityContext"]["fsGroup"]) == image_user()[1], name
    pvc = rayjob()["PersistentVolumeClaim"]
    assert claims == {pvc["metadata"]["name"]}
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rayjob_workers_have_gpus_and_the_head_runs_no_trials():
    spec = rayjob()["RayJob"]["spec"]["rayClusterSpec"]
    pin = re.search(r"^ray==(\S+)", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert spec["rayVersion"] == pin  # the image's Ray
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for name, pod in pods().items():
        if name != "head":
            limits = pod["containers"][0]["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1, name


def test_gpu_workers_hold_a_gpu_s_worth_of_trials():
    # fractional GPUs pack trials on one GPU only if the node also has the CPUs they ask for
    config, _ = tune_args()
    trial = yaml.safe_load((ROOT / config).read_text())["resources"]
    per_gpu = round(1 / trial["gpu"])
    nodes = [t["resources"] for t in ray_cluster()["available_node_types"].values()]
    for name, pod in pods().items():
        if name != "head":
            limits = pod["containers"][0]["resources"]["limits"]
            nodes.append({"CPU": int(limits["cpu"]), "GPU": int(limits["nvidia.com/gpu"])})
    for node in nodes:
        if node.get("GPU"):
            assert node["CPU"] >= trial["cpu"] * per_gpu * node["GPU"], node


def test_both_clusters_turn_on_ray_token_authentication():
    assert rayjob()["RayJob"]["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    cluster = ray_cluster()
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in ray_starts)
    # every node reads the same token where the image's user (HOME /home/ray) looks for it
    assert cluster["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}


def test_ray_cluster_config_is_what_ray_up_accepts():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(ray_cluster())))


def test_ray_cluster_shares_the_storage_and_has_gpu_workers():
    config = ray_cluster()
    _, storage = tune_args()
    docker = config["docker"]
    assert f"-v {storage}:{storage}" in docker["run_options"]
    assert "--gpus all" in docker["worker_run_options"]
    uid, gid = image_user()
    assert f"sudo chown {uid}:{gid} {storage}" in config["initialization_commands"]
    types = config["available_node_types"]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 1 for t in workers)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in head_start


# -- the manifests against KubeRay's own schemas ---------------------------------------------

# the openAPIV3Schema of KubeRay v1.5.1's RayJob and RayCluster CRDs (ray.io/v1): the first
# release with authOptions, which rayjob.yaml uses (source and commit in each file's header)
KUBERAY = Path(__file__).resolve().parent / "kuberay"


def strict(schema: object) -> object:
    """A CRD schema as the API server applies it to a manifest, for jsonschema: a field the
    schema does not name is an error (Kubernetes prunes it from a structural schema, and kubectl
    apply's default --validate=strict refuses it), unless the schema preserves unknown fields;
    `nullable` lets null through."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not"):
            out[key] = strict(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def kuberay_errors(doc: dict, crd: str) -> list[str]:
    """Where and why `doc` breaks KubeRay's schema for `crd` (rayjobs, rayclusters)."""
    import jsonschema

    text = (KUBERAY / f"ray.io_{crd}.v1.schema.yaml").read_text()
    schema = strict(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    validator = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0's schemas are draft 4's
    return sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc))


def test_rayjob_is_what_kuberay_accepts():
    job = rayjob()["RayJob"]
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert kuberay_errors(job, "rayjobs") == []
    # the RayCluster the operator makes of its rayClusterSpec passes that CRD's schema too
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"}}
    assert kuberay_errors({**cluster, "spec": job["spec"]["rayClusterSpec"]}, "rayclusters") == []


@pytest.mark.parametrize(
    "where, key, value, named",
    [
        ("spec", "shutdownAfterJobFinish", True, "'shutdownAfterJobFinish' was unexpected"),
        ("spec", "ttlSecondsAfterFinished", "600", "$.spec.ttlSecondsAfterFinished: '600' is"),
        ("spec", "backoffLimit", 1.5, "$.spec.backoffLimit: 1.5 is not of type 'integer'"),
        ("head", "rayStartParam", {}, "'rayStartParam' was unexpected"),
        ("worker", "replicas", "2", "workerGroupSpecs[0].replicas: '2' is not of type"),
        ("container", "imagePullPolicy", ["Always"], ".imagePullPolicy: ['Always'] is not"),
        ("container", "volumeMount", [], "'volumeMount' was unexpected"),
    ],
)
def test_a_broken_rayjob_fails_naming_the_field(where, key, value, named):
    job = copy.deepcopy(rayjob()["RayJob"])
    spec = job["spec"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    parts = {
        "spec": spec,
        "head": head,
        "worker": spec["rayClusterSpec"]["workerGroupSpecs"][0],
        "container": head["template"]["spec"]["containers"][0],
    }
    parts[where][key] = value
    errors = kuberay_errors(job, "rayjobs")
    assert len(errors) == 1 and named in errors[0], errors


def test_rayjob_retries_stops_and_cleans_up_with_a_reason_each():
    spec = rayjob()["RayJob"]["spec"]
    # retried on a new cluster (the tune resumes from the volume), bounded in time, cleaned up
    assert 1 <= spec["backoffLimit"] <= 5
    assert 3600 <= spec["activeDeadlineSeconds"] <= 7 * 86400
    assert spec["shutdownAfterJobFinishes"] is True and 0 < spec["ttlSecondsAfterFinished"] <= 86400
    lines = (CLUSTER / "rayjob.yaml").read_text().splitlines()
    for key in ("backoffLimit", "activeDeadlineSeconds", "shutdownAfterJobFinishes"):
        (i,) = [i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:")]
        assert lines[i - 1].strip().startswith("#") or "#" in lines[i], f"{key} needs a comment"


@pytest.mark.parametrize(
    "path, value, named",
    [
        (("max_worker",), 4, "'max_worker' was unexpected"),
        (("available_node_types", "gpu_worker", "min_worker"), 1, "'min_worker' was unexpected"),
        (("idle_timeout_minutes",), "ten", "'ten' is not of type 'number'"),
    ],
)
def test_a_broken_ray_cluster_config_fails_naming_the_field(path, value, named):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = ray_cluster()
    *parents, key = path
    node = config
    for p in parents:
        node = node[p]
    node[key] = value
    with pytest.raises(jsonschema.ValidationError) as e:
        validate_config(prepare_config(config))
    assert named in e.value.message


# -- a real two-node cluster on this machine --------------------------------------------------

RAY = str(Path(sys.executable).with_name("ray"))
EPOCHS = 8  # long enough that a poll sees a worker trial mid-run, even on a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc (Ray's workers start their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class Node:
    """One `ray start --block` with its own temp dir, ports and a custom resource; killed by PID.

    Never `ray stop`: it would stop every Ray on this machine, other people's test runs too.
    """

    def __init__(self, name: str, env: dict[str, str], head: str | None = None):
        self.name = name
        # short: Ray's unix socket paths under it must fit in 107 bytes
        self.temp = Path(tempfile.mkdtemp(prefix=f"gan-{name}-", dir="/tmp"))
        self.address = head or f"127.0.0.1:{free_port()}"
        # every port of its own: other test runs may have a Ray on this machine with the defaults
        ports = [
            "node-manager",
            "object-manager",
            "metrics-export",
            "runtime-env-agent",
            "dashboard-agent-listen",
            "dashboard-agent-grpc",
        ]
        if head is None:
            ports += ["dashboard", "ray-client-server"]
        cmd = [
            RAY,
            "start",
            "--block",
            f"--temp-dir={self.temp}",
            "--disable-usage-stats",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--resources={json.dumps({f'node_{name}': 1})}",
            "--object-store-memory=100000000",
            "--node-ip-address=127.0.0.1",
            *[f"--{p}-port={free_port()}" for p in ports],
        ]
        if head is None:
            cmd += ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false"]
        else:
            cmd += [f"--address={head}"]
        self.log = open(self.temp.with_suffix(".log"), "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_started(self, timeout: float = 180) -> None:
        # `ray start` writes the cluster address into its temp dir once the node has joined
        deadline = time.time() + timeout
        while not (self.temp / "ray_current_cluster").exists():
            assert self.proc.poll() is None, self.temp.with_suffix(".log").read_text()[-3000:]
            assert time.time() < deadline, f"node {self.name} did not start"
            time.sleep(0.5)
        # the address the GCS really listens on (Ray may swap 127.0.0.1 for the host's address)
        self.address = (self.temp / "ray_current_cluster").read_text().strip()

    def ran(self, pid: int) -> bool:
        """Whether a Ray worker with this pid ran on this node (its log is in our temp dir)."""
        return any(self.temp.glob(f"session_*/logs/**/python-core-worker-*_{pid}.log"))

    def kill(self) -> None:
        """Lose the node at once, as a machine would: SIGKILL to every process of it."""
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def remove(self) -> None:
        self.kill()
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.with_suffix(".log").unlink(missing_ok=True)


@pytest.fixture
def ray_env(tmp_path) -> dict[str, str]:
    """The environment of this cluster's processes, the job's driver included."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # a HOME of its own: Ray keeps state in ~/.ray (an auth token that another run on this
    # machine may have made there would lock our worker out of our head)
    (tmp_path / "home").mkdir()
    env["HOME"] = str(tmp_path / "home")
    # this test is about losing a node: the nodes run without token authentication whatever the
    # test process's own Ray uses (the manifests' authentication is checked above)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    # notice a lost node in ~3 s rather than ~15 s (read by the head's GCS)
    env.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    return env


@pytest.fixture
def two_nodes(ray_env):
    """A head node (resource node_a) and a worker node (node_b), separate processes here."""
    nodes = []
    try:
        nodes.append(Node("a", ray_env))
        nodes[0].wait_started()
        nodes.append(Node("b", ray_env, head=nodes[0].address))
        nodes[1].wait_started()
        yield nodes
    finally:
        for node in reversed(nodes):
            node.remove()


def trial_rows(exp: Path) -> dict[str, list[dict]]:
    """{trial id: its result.json rows so far} under the experiment dir on the shared storage."""
    rows = {}
    for path in exp.glob("*/result.json"):
        rows[path.parent.name] = []
        for line in path.read_text().splitlines():
            try:
                rows[path.parent.name].append(json.loads(line))
            except json.JSONDecodeError:  # the line the driver is writing now
                break
    return rows


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_tune_job_on_two_nodes_survives_losing_one(two_nodes, ray_env, tmp_path, fmnist_dir):
    head, worker = two_nodes
    spec = {
        "name": "two-nodes",
        "metric": "fd_domain",
        "mode": "min",
        "base": dict(
            dataset="fashion_mnist",
            data_dir=str(tmp_path / "data"),
            limit=256,
            batch_size=32,
            width=8,
            latent_dim=16,
            epochs=EPOCHS,
            eval_every=1,
            sample_every=0,
            checkpoint_every=1,
            fid_samples=64,
            seed=0,
            device="cpu",
            arch="dcgan",
        ),
        "search": {"lr_g": {"grid_search": [1.0e-4, 2.0e-4, 4.0e-4]}},
        "scheduler": {"type": "fifo"},  # every trial runs to the end
        "resources": {"cpu": 1, "gpu": 0},  # one trial per node at a time
        "max_failures": 2,
    }
    spec_file = tmp_path / "two-nodes.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "shared"  # one filesystem: shared storage, as on a cluster
    exp = storage / spec["name"]
    # the job joins the cluster through RAY_ADDRESS, as `ray job submit` drivers do
    driver_log = tmp_path / "driver.log"
    with open(driver_log, "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "jobs/tune.py", str(spec_file), "--storage", str(storage)],
            cwd=ROOT,
            env={**ray_env, "RAY_ADDRESS": head.address},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        on_worker: set[str] = set()  # trials running on the worker when it was lost
        deadline = time.time() + 800
        try:
            while driver.poll() is None:
                assert time.time() < deadline, driver_log.read_text()[-5000:]
                time.sleep(0.25)
                if worker.proc.poll() is not None:
                    continue
                for trial, rows in trial_rows(exp).items():
                    # lose the worker once one of its trials has a checkpoint and epochs to go
                    last = rows[-1] if rows else {}
                    if worker.ran(last.get("pid", -1)) and last["epoch"] < EPOCHS:
                        if any((exp / trial).glob("checkpoint_*")):
                            on_worker.add(trial)
                if on_worker:
                    worker.kill()
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    output = driver_log.read_text()
    assert driver.returncode == 0, output[-5000:]
    assert on_worker, "no trial was running on the worker node: nothing was tested"

    rows = trial_rows(exp)
    assert len(rows) == 3
    pids = {r["pid"] for rs in rows.values() for r in rs}
    assert any(head.ran(p) for p in pids) and any(worker.ran(p) for p in pids)
    for trial, rs in rows.items():
        epochs = [r["epoch"] for r in rs]
        # never started over: each epoch reported once, in order, up to the last, on shared storage
        assert epochs == sorted(set(epochs)) and epochs[-1] == EPOCHS, (trial, epochs)
        assert (exp / trial / "log.jsonl").is_file()
    for trial in on_worker:
        # begun on the lost node, finished on the head from the checkpoint the lost node left
        on_b = [r["epoch"] for r in rows[trial] if worker.ran(r["pid"])]
        on_a = [r["epoch"] for r in rows[trial] if head.ran(r["pid"])]
        assert on_b and on_a and min(on_a) > max(on_b), (on_b, on_a)
    with open(exp / "trials.csv") as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses == ["completed"] * 3
    assert (exp / "best.yaml").is_file()
