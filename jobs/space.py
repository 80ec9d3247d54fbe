"""A tune YAML's `search:` mapping checked and turned into Ray Tune domains: config keys, each
with one of the forms choice, grid_search, uniform, loguniform or randint."""

from __future__ import annotations

from gan.config import FIELDS, NOT_SEARCHABLE, Config, GanError, make_config, to_dict

FORMS = ("choice", "grid_search", "uniform", "loguniform", "randint")
# the optional package a tune feature imports -> the gan extra that installs it
EXTRA = {"optuna": "optuna", "mlflow": "mlflow", "wandb": "wandb", "sklearn": "pb2"}


def _number(where: str, value: object) -> float:
    if isinstance(value, bool):
        raise GanError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)  # PyYAML reads 1e-4 (no dot) as a string
    except (TypeError, ValueError):
        raise GanError(
            f"{where}: expected a number, got {value!r} (write floats as 1.0e-4)"
        ) from None


def _needs(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise GanError(
            f"{what} needs the '{module}' package; install it with "
            f"pip install 'gan[{EXTRA[module]}]'"
        )


def _int(data: dict, key: str, default: int, low: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GanError(f"tune key '{key}': expected an integer >= {low}, got {value!r}")
    return value


def _checked_value(key: str, value: object, base: Config) -> object:
    """One candidate value of a searched key, coerced and checked against the base config."""
    try:
        return to_dict(make_config({key: value}, base=base))[key]
    except GanError as e:
        raise GanError(f"search key '{key}': value {value!r} is invalid ({e})") from None


def search_space(search: dict, base: Config) -> dict:
    """Translate the YAML `search:` mapping into Ray Tune domains, checking keys and value types."""
    from ray import tune

    if not isinstance(search, dict):
        raise GanError("tune key 'search': expected a mapping of config key -> {form: values}")
    space = {}
    for key, rule in search.items():
        if key not in FIELDS:
            raise GanError(
                f"search key '{key}' is not a config key; valid keys: {', '.join(FIELDS)}"
            )
        if key in NOT_SEARCHABLE:
            raise GanError(f"search key '{key}' cannot be searched; set it at the top level")
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in FORMS:
            raise GanError(
                f"search key '{key}': expected one of {{{': ..., '.join(FORMS)}: ...}}, "
                f"e.g. {key}: {{choice: [a, b]}}; got {rule!r}"
            )
        form, args = next(iter(rule.items()))
        where = f"search key '{key}' ({form})"
        if not isinstance(args, list) or not args:
            raise GanError(f"{where}: expected a non-empty list, got {args!r}")
        if form in ("choice", "grid_search"):
            values = [_checked_value(key, v, base) for v in args]
            space[key] = tune.choice(values) if form == "choice" else tune.grid_search(values)
            continue
        if len(args) != 2:
            raise GanError(f"{where}: expected [low, high], got {args!r}")
        kind = getattr(FIELDS[key].type, "__name__", FIELDS[key].type)  # "float", "int", ...
        if form in ("uniform", "loguniform") and kind != "float":
            raise GanError(f"{where}: '{key}' is {kind}, not float; use choice or randint")
        if form == "randint" and kind not in ("int", "float"):
            raise GanError(f"{where}: '{key}' is {kind}, not a number; use choice")
        low, high = (_number(where, v) for v in args)
        if form == "randint":
            if not (low.is_integer() and high.is_integer()):
                raise GanError(f"{where}: bounds must be integers, got {args!r}")
            low, high = int(low), int(high)
        if not low < high:
            raise GanError(f"{where}: low must be below high, got {args!r}")
        if form == "loguniform" and low <= 0:
            raise GanError(f"{where}: low must be positive, got {args!r}")
        # both ends must be valid values themselves (randint excludes its upper bound)
        _checked_value(key, low, base)
        _checked_value(key, high - 1 if form == "randint" else high, base)
        space[key] = getattr(tune, form)(low, high)
    return space
