"""docs/config.md, the key table, generated from the fields of gan.config.Config and what each
declares: `python -m gan.config_docs docs/config.md` writes it (no path: prints it)."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml

from gan.config import FIELDS, META, Config

HINTS = typing.get_type_hints(Config)


# the sections of Config, named by their first key
SECTIONS = {
    "name": "Run",
    "dataset": "Data",
    "arch": "Model",
    "epochs": "Optimisation",
    "diffaug": "Techniques of the strongest recipes (all off by default)",
    "amp": "Hardware and reproducibility",
    "sample_every": "Logging, checkpoints, evaluation",
}


def _yaml(value: object) -> str:
    """A value as it is written in YAML and `--set`."""
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _values(name: str) -> str:
    meta, kind = META[name], HINTS[name]
    if meta["choices"]:
        return ", ".join(_yaml(v) for v in meta["choices"])
    if meta["subset"]:
        return f"comma-separated subset of {', '.join(meta['subset'])}"
    if meta["range"]:
        return meta["range"]
    if kind is bool:
        return "true, false"
    if meta["path"]:
        return "path"
    return "list of labels" if kind is not str else "text"


def key_table() -> str:
    """The config keys as Markdown tables, one per section: key, default, values, on resume,
    what it does."""
    lines = []
    for name, f in FIELDS.items():
        if name in SECTIONS:
            lines += ["", f"### {SECTIONS[name]}", ""]
            lines += [
                "| key | default | values | on resume | what it does |",
                "|---|---|---|---|---|",
            ]
        meta = META[name]
        resume = "retuned" if meta["retune"] else "may change" if meta["resume"] else "fixed"
        cells = [f"`{name}`", f"`{_yaml(f.default)}`", _values(name), resume, meta["doc"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"


PAGE = """# Config keys

Generated from `gan/config.py` by `python -m gan.config_docs docs/config.md`; edit the fields
there, not this page.

Every key is one field of `gan.config.Config`, with the same name in YAML files (`--config`),
presets (`--preset`), `--set key=value` overrides (applied in that order) and a tune's `base:`
and `search:`. Unknown keys, wrong types and values outside the ones listed are refused naming
the key. Write floats as `1.0e-4` in YAML (`1e-4` is read as a string, and converted).

*On resume*: a run resumed from its checkpoints (`gan train --out DIR`, a tune trial's retry)
may change only the keys marked *may change* (where they go, how often it logs and evaluates,
how long it runs); *retuned* keys also apply from the resumed epoch on, with the optimiser's
state kept (what Population Based Training mutates). Any other change is refused.

"""


def config_page() -> str:
    """The text of docs/config.md."""
    return PAGE + key_table()


if __name__ == "__main__":  # python -m gan.config_docs [docs/config.md]: write (or print) it
    import sys

    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(config_page())
    else:
        sys.stdout.write(config_page())
