"""A tune YAML's `scheduler:` section checked: ASHA (the default), FIFO, PBT or PB2, with max_t and
the type's own settings. jobs.search builds Ray's scheduler from the result."""

from __future__ import annotations

from gan.config import RETUNABLE, Config, GanError
from jobs.space import _int, _needs, _number

SCHEDULERS = {
    "asha": ("grace_period", "reduction_factor", "max_t"),
    "fifo": ("max_t",),
    "pbt": ("perturbation_interval", "quantile_fraction", "resample_probability", "max_t"),
    "pb2": ("perturbation_interval", "quantile_fraction", "max_t"),
}
# the schedulers whose trials copy a better trial's checkpoint and go on under new values
POPULATION = ("pbt", "pb2")


def parse_scheduler(data: object, base: Config, searched: dict) -> dict:
    """The checked `scheduler:` section: its type, max_t, and the type's own settings."""
    data = {"type": "asha"} if data is None else data
    if not isinstance(data, dict):
        raise GanError("tune key 'scheduler': expected a mapping, e.g. {type: asha, max_t: 8}")
    kind = data.get("type", "asha")
    if kind not in SCHEDULERS:
        raise GanError(f"scheduler key 'type': {kind!r} is not one of {tuple(SCHEDULERS)}")
    unknown = sorted(set(data) - {"type", *SCHEDULERS[kind]})
    if unknown:
        raise GanError(
            f"unknown {kind} scheduler key(s) {', '.join(unknown)}; valid: type, "
            f"{', '.join(SCHEDULERS[kind])}"
        )
    if "max_t" not in data and "epochs" in searched:
        raise GanError("scheduler key 'max_t': required when 'epochs' is searched")
    max_t = _int(data, "max_t", base.epochs, 1)
    if "epochs" not in searched and max_t > base.epochs:
        raise GanError(
            f"scheduler key 'max_t': {max_t} exceeds epochs {base.epochs}; trials end "
            "at epochs, so raise base epochs or lower max_t"
        )
    out = {"type": kind, "max_t": max_t}
    if kind == "asha":
        grace = _int(data, "grace_period", 1, 1)
        if grace > max_t:
            raise GanError(f"scheduler key 'grace_period': {grace} exceeds max_t {max_t}")
        rf = _number("scheduler key 'reduction_factor'", data.get("reduction_factor", 2))
        if rf <= 1:
            raise GanError(f"scheduler key 'reduction_factor': must be above 1, got {rf}")
        out.update(grace_period=grace, reduction_factor=rf)
    if kind in POPULATION:
        out.update(_pbt(data, base, searched, kind))
    return out


def _pbt(data: dict, base: Config, searched: dict, kind: str) -> dict:
    """PBT's and PB2's settings: they mutate the searched keys a checkpoint may resume under."""
    mutate = [k for k in searched if k in RETUNABLE and not isinstance(searched[k], dict)]
    if not mutate:
        raise GanError(
            f"scheduler type '{kind}': search at least one of "
            f"{', '.join(RETUNABLE)} with choice, uniform or loguniform; {kind.upper()} mutates "
            "those (a checkpoint resumes under their new values)"
        )
    if kind == "pb2":  # every RETUNABLE key is a number: PB2 takes a choice's lowest to highest
        _needs("sklearn", "scheduler type 'pb2'")
    interval = _int(data, "perturbation_interval", base.eval_every, 1)
    if interval % base.eval_every:
        raise GanError(
            f"scheduler key 'perturbation_interval': {interval} is not a multiple of "
            f"eval_every {base.eval_every}; trials report (and checkpoint) only at evaluations"
        )
    quantile = _number("scheduler key 'quantile_fraction'", data.get("quantile_fraction", 0.25))
    if not 0 < quantile <= 0.5:
        raise GanError(f"scheduler key 'quantile_fraction': must be in (0, 0.5], got {quantile}")
    out = {"perturbation_interval": interval, "quantile_fraction": quantile, "mutate": mutate}
    if kind == "pbt":  # PB2 has no such key: its bandit replaces PBT's random resampling
        resample = _number(
            "scheduler key 'resample_probability'", data.get("resample_probability", 0.25)
        )
        if not 0 <= resample <= 1:
            raise GanError(
                f"scheduler key 'resample_probability': must be in [0, 1], got {resample}"
            )
        out["resample_probability"] = resample
    return out
