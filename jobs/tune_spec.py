"""A tune experiment's YAML (tune_configs/*.yaml) read, checked and turned into Ray's search space.

Layout of the file (every key but `base` is optional):

    name: quick                 # experiment name = directory under the storage path (resume key)
    metric: fd_domain           # the Config `metric` every trial reports; ASHA and best.yaml use it
    mode: min
    base: {...}                 # Config values shared by all trials
    search:                     # Config keys -> one of the five forms below
      arch: {grid_search: [baseline, dcgan]}
      loss: {choice: [bce, hinge]}
      lr_g: {loguniform: [1.0e-4, 1.0e-3]}
      beta1: {uniform: [0.0, 0.9]}
      latent_dim: {randint: [32, 129]}     # upper bound excluded, as in Ray
    searcher: random            # random | grid (every key a list) | optuna (TPE, seeded)
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2, max_t: 8}   # or {type: fifo}
    #   or {type: pbt, perturbation_interval: 2, quantile_fraction: 0.25, resample_probability:
    #   0.25}: mutates the searched RETUNABLE keys (lr_g, lr_d, betas, ...) of the worst trials
    #   or {type: pb2, perturbation_interval: 2, quantile_fraction: 0.25}: PBT whose new values
    #   come from a Gaussian-process bandit within the keys' ranges (pip install 'gan[pb2]')
    reevaluate: {top: 3, seeds: 3}   # retrain the best 3 with 3 new seeds each; rank by the mean
    loggers: [mlflow, wandb]    # Ray Tune's MLflow, W&B loggers (pip install 'gan[mlflow,wandb]')
    resources: {cpu: 1, gpu: 0.25}         # per trial; fractional GPUs pack trials on one GPU
    num_samples: 1              # samples per grid point (optuna: trials in all)
    max_concurrent: 0           # 0: as many as the resources allow
    seed: 0                     # seeds the sampling of the search space
    max_failures: 2             # retries of a crashed trial, from its last checkpoint
    num_to_keep: 1              # Ray checkpoints kept per trial: the best by metric (+ the latest)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gan.config import PATH_KEYS, Config, GanError, make_config, read_yaml, to_dict
from jobs.schedule import POPULATION, parse_scheduler
from jobs.space import _int, _needs, _number, search_space

TOP_KEYS = (
    "name",
    "metric",
    "mode",
    "base",
    "search",
    "scheduler",
    "resources",
    "num_samples",
    "max_concurrent",
    "seed",
    "max_failures",
    "num_to_keep",
    "searcher",
    "reevaluate",
    "loggers",
)
SEARCHERS = ("random", "grid", "optuna")
LOGGERS = {"mlflow": "mlflow", "wandb": "wandb"}  # logger -> the module it needs


@dataclass(frozen=True)
class Spec:
    """A checked tune experiment: the complete base config, the search space and Ray settings."""

    name: str
    metric: str
    mode: str
    base: dict  # to_dict() of the checked base Config: every trial gets every key
    search: dict  # Config key -> Ray domain or {"grid_search": [...]}
    scheduler: dict  # {"type": "asha"|"fifo"|"pbt"|"pb2", "max_t", and the type's own keys}
    cpu: float
    gpu: float
    num_samples: int
    max_concurrent: int
    seed: int | None
    max_failures: int
    num_to_keep: int
    searcher: str = "random"
    reevaluate: dict | None = None  # {"top": K, "seeds": S}
    loggers: tuple[str, ...] = ()

    def param_space(self) -> dict:
        """Ray's param_space: Config keys verbatim, searched keys replaced by their domains."""
        return {**self.base, **self.search}


def resolve_paths(values: dict, cwd: Path | None = None) -> dict:
    """Make the path keys (data_dir, data_path, fid_weights: gan.config.PATH_KEYS) absolute,
    relative to the driver's cwd: trials run in their own directories."""
    cwd = Path.cwd() if cwd is None else cwd
    out = dict(values)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and "://" not in value:
            out[key] = str((cwd / Path(value).expanduser()).resolve())
    return out


def _searcher(data: dict, search: dict, scheduler: dict) -> tuple[str, dict]:
    """The searcher's name and the search space it takes (grid: every choice made a grid)."""
    from ray import tune

    name = data.get("searcher", "random")
    if name not in SEARCHERS:
        raise GanError(f"tune key 'searcher': {name!r} is not one of {SEARCHERS}")
    if name == "grid":
        for key, domain in search.items():
            if not isinstance(domain, dict) and not hasattr(domain, "categories"):
                raise GanError(
                    f"searcher grid: search key '{key}' is a range; list its values with "
                    f"grid_search or choice, or use searcher random or optuna"
                )
        search = {
            k: d if isinstance(d, dict) else tune.grid_search(list(d.categories))
            for k, d in search.items()
        }
    if name == "optuna":
        _needs("optuna", "searcher optuna")
        grids = [k for k, d in search.items() if isinstance(d, dict)]
        if grids:
            raise GanError(
                f"searcher optuna: search key '{grids[0]}' uses grid_search, which Optuna "
                "cannot sample; write it as choice"
            )
        if scheduler["type"] in POPULATION:
            kind = scheduler["type"]
            raise GanError(
                f"searcher optuna with scheduler {kind}: {kind.upper()} explores by mutating "
                f"trials itself; use searcher random with {kind}, or optuna with asha"
            )
    return name, search


def _population(kind: str, search: dict, num_samples: int, max_concurrent: int) -> None:
    """PBT's population is the trials that exist, and a searcher holding `max_concurrent`
    creates no new trial until one ends: a smaller limit would split the population into
    groups that never meet. Concurrency under PBT comes from the trials' resources."""
    if kind not in POPULATION or not max_concurrent:
        return
    trials = num_samples
    for domain in search.values():
        if isinstance(domain, dict):  # grid_search: every value for every sample
            trials *= len(domain["grid_search"])
    if max_concurrent < trials:
        raise GanError(
            f"tune key 'max_concurrent': {max_concurrent} with scheduler {kind} and {trials} "
            f"trials would make {kind.upper()}'s population the {max_concurrent} trials running "
            "at once (the others are not created until one ends, and never compared); drop "
            "max_concurrent, and limit how many run at once with resources (cpu, gpu per trial)"
        )


def _reevaluate(data: object, scheduler: dict) -> dict | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - {"top", "seeds"}:
        raise GanError(f"tune key 'reevaluate': expected {{top: K, seeds: S}}, got {data!r}")
    if scheduler["type"] in POPULATION:
        raise GanError(
            f"tune key 'reevaluate' with scheduler {scheduler['type']}: a PBT trial's result is "
            "a schedule of values, not one config to retrain; drop reevaluate or use asha"
        )
    return {"top": _int(data, "top", 3, 1), "seeds": _int(data, "seeds", 3, 1)}


def _loggers(data: object) -> tuple[str, ...]:
    data = [] if data is None else data
    if not isinstance(data, list) or any(x not in LOGGERS for x in data):
        raise GanError(f"tune key 'loggers': expected a list of {', '.join(LOGGERS)}, got {data!r}")
    for name in data:
        _needs(LOGGERS[name], f"logger {name}")
    return tuple(dict.fromkeys(data))


def _resources(data: object) -> tuple[float, float]:
    data = {} if data is None else data
    if not isinstance(data, dict) or set(data) - {"cpu", "gpu"}:
        raise GanError(f"tune key 'resources': expected {{cpu: N, gpu: F}}, got {data!r}")
    cpu = _number("resources key 'cpu'", data.get("cpu", 1))
    gpu = _number("resources key 'gpu'", data.get("gpu", 0))
    if cpu <= 0:
        raise GanError(f"resources key 'cpu': must be positive, got {cpu}")
    if gpu < 0 or (gpu > 1 and not gpu.is_integer()):
        raise GanError(f"resources key 'gpu': a fraction in [0, 1] or a whole number, got {gpu}")
    return cpu, gpu


def parse_spec(data: dict, default_name: str) -> Spec:
    """Check a tune YAML mapping and build its Spec; every error names the key."""
    if not isinstance(data, dict):
        raise GanError("a tune config must be a mapping with at least a 'base:' section")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise GanError(
            f"unknown tune key(s) {', '.join(unknown)}; valid keys: {', '.join(TOP_KEYS)}"
        )
    base_values = data.get("base") or {}
    if not isinstance(base_values, dict):
        raise GanError("tune key 'base': expected a mapping of config values")
    metric = data.get("metric", base_values.get("metric", Config.metric))
    if "metric" in base_values and base_values["metric"] != metric:
        raise GanError(
            f"tune key 'metric': {metric!r} differs from base metric "
            f"{base_values['metric']!r}; set it once"
        )
    name = str(data.get("name") or default_name)
    if not name or "/" in name or name.startswith("."):
        raise GanError(f"tune key 'name': {name!r} is not a valid directory name")
    base = make_config({"name": name, **base_values, "metric": metric})
    base = make_config(resolve_paths(to_dict(base)))  # default data_dir too
    if base.eval_every < 1:
        raise GanError(
            "config key 'eval_every': the tuner needs a report every few epochs; "
            f"set eval_every to 1 or more in base (got {base.eval_every})"
        )
    mode = data.get("mode", "min")
    if mode not in ("min", "max"):
        raise GanError(f"tune key 'mode': {mode!r} is not one of ('min', 'max')")
    search = search_space(data.get("search") or {}, base)
    scheduler = parse_scheduler(data.get("scheduler"), base, search)
    searcher, search = _searcher(data, search, scheduler)
    cpu, gpu = _resources(data.get("resources"))
    if gpu > 0 and base.device == "cpu":
        raise GanError(
            "resources key 'gpu': trials get a GPU but base device is cpu; "
            "set device: auto or gpu: 0"
        )
    seed = data.get("seed", 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise GanError(f"tune key 'seed': expected an integer or null, got {seed!r}")
    num_samples = _int(data, "num_samples", 1, 1)
    max_concurrent = _int(data, "max_concurrent", 0, 0)
    _population(scheduler["type"], search, num_samples, max_concurrent)
    return Spec(
        name=name,
        metric=metric,
        mode=mode,
        base=to_dict(base),
        search=search,
        scheduler=scheduler,
        cpu=cpu,
        gpu=gpu,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        seed=seed,
        max_failures=_int(data, "max_failures", 2, -1),
        num_to_keep=_int(data, "num_to_keep", 1, 1),
        searcher=searcher,
        reevaluate=_reevaluate(data.get("reevaluate"), scheduler),
        loggers=_loggers(data.get("loggers")),
    )


def load_spec(path: str | Path, name: str | None = None) -> Spec:
    """Read and check a tune YAML file; `name` overrides its experiment name."""
    data = read_yaml(path)
    if name:
        data = {**data, "name": name}
    return parse_spec(data, Path(path).stem)
