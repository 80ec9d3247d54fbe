"""Every config key declares what the rest of the package needs to know about it once, in its
Config field; the lists other modules use are derived from that and pinned here."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gan import config, config_docs
from gan.config import CHOICES, FIELDS, PATH_KEYS, RETUNABLE, Config, make_config

# the derived sets as they were written out by hand: runs and checkpoints resume as before
RESUMABLE_BEFORE = {
    *("name", "epochs", "eval_every", "sample_every", "checkpoint_every", "keep_checkpoints"),
    *("device", "amp", "compile", "data_dir", "fid_samples", "fid_ref_split", "fid_weights"),
    *("fid_compile", "kid", "prc", "metric", "zip_member_max_bytes", "zip_max_bytes"),
    *("lr_g", "lr_d", "beta1", "beta2", "r1_gamma", "label_smoothing", "label_noise"),
}
RETUNABLE_BEFORE = ("lr_g", "lr_d", "beta1", "beta2", "r1_gamma", "label_smoothing", "label_noise")
CHOICES_BEFORE = {
    "dataset": ("fashion_mnist", "mnist", "cifar10", "folder", "zip"),
    "upsample": ("default", "transposed", "nearest", "pixelshuffle"),
    "loss": ("bce", "hinge"),
    "metric": ("fid", "fd_domain"),
    "fid_ref_split": ("train", "test"),
    "arch": ("baseline", "modified", "dcgan", "resnet"),
}
INPUT_BEFORE = {"dataset", "data_path", "data_dir", "classes", "fid_weights", "metric", "kid"}
PATH_BEFORE = {"data_dir", "data_path", "fid_weights"}
NOT_SEARCHABLE_BEFORE = {"metric", "name"}
# what data_key named the prepared data by (image_size as "size", balanced only when on)
DATA_BEFORE = {"dataset", "data_path", "classes", "image_size", "channels", "limit", "holdout"}
DATA_BEFORE |= {"balanced"}
# what gan evaluate keyed its evaluators by beside data_key, by hand (fid_ref_split as its split)
SCORE_BEFORE = {"fid_samples", "metric", "kid", "prc", "fid_weights", "data_dir", "fid_ref_split"}
# and fid_compile since: two runs differing only in it shared the first one's Inception
SCORE_NOW = SCORE_BEFORE | {"fid_compile"}


def test_resumable_keys_are_those_of_before():
    from gan.train import RESUMABLE

    assert set(RESUMABLE) == RESUMABLE_BEFORE


def test_retunable_keys_are_those_of_before():
    # in field order now: only the wording of one scheduler error and a log row's key order
    assert set(RETUNABLE) == set(RETUNABLE_BEFORE) and len(RETUNABLE) == len(RETUNABLE_BEFORE)


def test_choices_are_those_of_before_and_fake():
    assert {k: v for k, v in CHOICES.items() if k != "channels"} == {
        **CHOICES_BEFORE,
        "dataset": (*CHOICES_BEFORE["dataset"], "fake"),
    }


def test_tune_keys_are_those_of_before():
    from jobs.space import NOT_SEARCHABLE
    from jobs.tune_spec import PATH_KEYS as TUNE_PATH_KEYS

    assert set(config.INPUT_KEYS) == INPUT_BEFORE  # jobs.tune imports it (and Ray)
    assert set(TUNE_PATH_KEYS) == set(PATH_KEYS) == PATH_BEFORE
    assert set(NOT_SEARCHABLE) == set(config.NOT_SEARCHABLE) == NOT_SEARCHABLE_BEFORE


def test_data_keys_are_those_of_before():
    assert set(config.DATA_KEYS) == DATA_BEFORE


def test_score_keys_are_those_of_before_and_fid_compile():
    assert set(config.SCORE_KEYS) == SCORE_NOW


# -- every field declares its key --------------------------------------------------------------


def undeclared(cls) -> list[str]:
    """Fields of a Config-like dataclass declared without gan.config.key() (or without a doc)."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("doc")]


def test_every_field_is_declared_with_a_doc_line():
    assert undeclared(Config) == []
    for name, meta in config.META.items():
        assert "\n" not in meta["doc"] and len(meta["doc"]) < 100, name


def test_a_field_without_metadata_is_caught():
    bigger = dataclasses.make_dataclass(
        "Bigger", [("new_knob", int, dataclasses.field(default=3))], bases=(Config,), frozen=True
    )
    assert undeclared(bigger) == ["new_knob"]
    # and its key would be fixed on resume, as a conservative default
    meta = {**config.key(None, "").metadata, **dataclasses.fields(bigger)[-1].metadata}
    assert not meta["resume"] and not meta["path"] and meta["search"]


def test_derived_lists_are_config_keys():
    names = set(FIELDS)
    assert set(CHOICES) <= names and set(RETUNABLE) <= names and set(PATH_KEYS) <= names
    assert set(config.RESUMABLE) <= names and set(config.INPUT_KEYS) <= names
    assert set(config.NOT_SEARCHABLE) <= names and set(config.DATA_KEYS) <= names
    assert set(config.SCORE_KEYS) <= names
    assert not set(config.SCORE_KEYS) & set(config.DATA_KEYS)  # those count through data_key
    assert set(RETUNABLE) <= config.RESUMABLE  # a retuned key may change on resume
    assert not set(config.DATA_KEYS) & config.RESUMABLE  # other data: another run
    for name, meta in config.META.items():
        default = FIELDS[name].default
        if meta["choices"]:
            assert default in meta["choices"], name
        if meta["range"]:
            assert config._outside(meta["range"], default) is None, name
        if meta["path"]:
            assert config._HINTS[name] is str, name
        assert not (meta["choices"] and meta["range"]), name
    assert make_config({}) == Config()


def test_every_range_and_choice_is_enforced():
    for name, meta in config.META.items():
        if meta["choices"]:
            with pytest.raises(config.GanError, match=f"'{name}'"):
                make_config({name: "not-a-choice" if config._HINTS[name] is str else 2})
        if meta["range"]:
            low = float(meta["range"][1:-1].split(",")[0])
            below = low - 1 if config._HINTS[name] is int else low - 0.5
            if meta["range"][0] == "(":
                below = low
            with pytest.raises(config.GanError, match=f"config key '{name}': must"):
                make_config({name: below})


def test_diffaug_ops_are_the_policies_of_gan_diffaug():
    from gan.diffaug import POLICIES

    assert config.DIFFAUG == POLICIES == config.META["diffaug"]["subset"]
    make_config({"diffaug": ",".join(POLICIES)})


# -- data_key reads exactly the data keys --------------------------------------------------------

# a valid value other than the default, per key where the generic guess below does not fit
OTHER = {"data_path": "elsewhere", "image_size": 32, "fid_weights": "w.pt", "diffaug": "cutout"}


def _other(name, base):
    meta, kind = config.META[name], config._HINTS[name]
    if name in OTHER:
        return OTHER[name]
    if meta["choices"]:
        return next(v for v in meta["choices"] if v != getattr(base, name))
    if kind is bool:
        return not getattr(base, name)
    if kind is str:
        return getattr(base, name) + "x"
    if kind is int:
        return getattr(base, name) + 1
    if kind is float:
        return getattr(base, name) / 2 or 0.05
    return (0,)


def test_data_key_changes_with_the_data_keys_only(tmp_path):
    from gan.data import data_key

    (tmp_path / "elsewhere").mkdir()
    values = {
        "dataset": "folder",
        "data_path": str(tmp_path / "imgs"),
        "limit": 5,
        "diffaug": "color",
    }
    base = make_config(values)
    changes = set()
    for name in FIELDS:
        value = _other(name, base)
        if name == "data_path":
            value = str(tmp_path / value)
        cfg = make_config({name: value}, base=base)
        assert getattr(cfg, name) != getattr(base, name), name
        if any(data_key(cfg, s) != data_key(base, s) for s in ("train", "test")):
            changes.add(name)
    assert changes == set(config.DATA_KEYS)


# -- docs/config.md --------------------------------------------------------------------------


def test_docs_config_md_is_the_generated_page():
    page = Path(__file__).parents[1] / "docs" / "config.md"
    assert page.read_bytes() == config_docs.config_page().encode(), (
        "docs/config.md is stale: run python -m gan.config_docs docs/config.md"
    )


def test_key_table_has_every_key_once():
    table = config_docs.key_table()
    for name in FIELDS:
        assert table.count(f"| `{name}` |") == 1, name
    assert "| `lr_g` | `0.0002` | (0, inf) | retuned |" in table
    assert "| `seed` | `0` | text |" not in table


def test_python_m_gan_config_docs_writes_the_page(tmp_path):
    out = tmp_path / "config.md"
    subprocess.run([sys.executable, "-m", "gan.config_docs", str(out)], check=True)
    assert out.read_text() == config_docs.config_page()
