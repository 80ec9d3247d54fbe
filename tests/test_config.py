"""Config: types, unknown keys, overrides and the shipped presets."""

import pytest

from gan.config import Config, GanError, load_config, make_config, parse_overrides, presets


def test_defaults_are_valid():
    assert make_config({}) == Config()


def test_unknown_key_is_named():
    with pytest.raises(GanError, match="lr_gg"):
        make_config({"lr_gg": 1e-4})


@pytest.mark.parametrize(
    ("key", "value"),
    [("epochs", "ten"), ("lr_g", "fast"), ("spectral_norm", "maybe"), ("epochs", 1.5)],
)
def test_wrong_type_is_named(key, value):
    with pytest.raises(GanError, match=key):
        make_config({key: value})


@pytest.mark.parametrize(("key", "value"), [("arch", "stylegan"), ("channels", 2), ("lr_d", -1.0)])
def test_bad_value_is_named(key, value):
    with pytest.raises(GanError, match=key):
        make_config({key: value})


def test_yaml_style_strings_are_coerced():
    # PyYAML reads 1e-4 as a string; the config turns it into the float it means
    cfg = make_config({"lr_g": "1e-4", "epochs": "3", "hflip": "true", "classes": "2,0"})
    assert cfg.lr_g == 1e-4 and cfg.epochs == 3 and cfg.hflip is True and cfg.classes == (0, 2)


def test_overrides_parse_yaml_values():
    values = parse_overrides(["lr_g=1.0e-3", "arch=modified", "classes=[1, 3]", "data_path="])
    cfg = make_config(values)
    assert (cfg.lr_g, cfg.arch, cfg.classes, cfg.data_path) == (1e-3, "modified", (1, 3), "")
    with pytest.raises(GanError, match="key=value"):
        parse_overrides(["epochs"])


def test_every_preset_loads():
    names = presets()
    expected = {"fmnist", "seed000-baseline", "seed000-modified", "seed001-v1", "seed001-v2"}
    assert expected | {"seed002-dcgan"} <= set(names)
    for name in names:
        cfg = load_config(preset=name, overrides=["data_path=images.zip"])
        assert cfg.name == name


def test_seed000_presets_match_the_seed():
    cfg = load_config(preset="seed000-modified", overrides=["data_path=x.zip"])
    assert (cfg.image_size, cfg.channels, cfg.batch_size, cfg.epochs, cfg.eval_every) == (
        100,
        3,
        32,
        1000,
        200,
    )
    assert cfg.arch == "modified" and cfg.lr_decay < 1 and cfg.d_noise > 0
    with pytest.raises(GanError, match="data_path"):
        load_config(preset="seed000-baseline")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(GanError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
