"""The quality bench's arithmetic: ratios to the reference at equal epochs and equal seconds."""

from pathlib import Path

import pytest

from bench.common import recipe_key
from bench.rows.quality import ratios
from gan.config import make_config


def _curve(fds, seconds):
    return [
        {"epoch": i + 1, "fd_domain": fd, "seconds": s, "cpu_seconds": 2 * s}
        for i, (fd, s) in enumerate(zip(fds, seconds, strict=True))
    ]


def test_ratios_at_equal_epochs_and_interpolated_seconds():
    ref = _curve([80.0, 40.0, 20.0], [100.0, 200.0, 300.0])
    rec = _curve([40.0, 10.0, 5.0], [150.0, 300.0, 450.0])
    out = ratios(rec, ref)
    assert [r["vs_ref_at_epoch"] for r in out] == [0.5, 0.25, 0.25]
    # at 150 s the reference is halfway (in log) between 80 and 40: sqrt(80 * 40)
    assert out[0]["vs_ref_at_seconds"] == pytest.approx(40.0 / (80.0 * 40.0) ** 0.5)
    assert out[1]["vs_ref_at_seconds"] == pytest.approx(10.0 / 20.0)
    assert out[2]["vs_ref_at_seconds"] is None  # past the reference's curve: never extrapolated
    assert out[1]["vs_ref_at_cpu_seconds"] == pytest.approx(10.0 / 20.0)


def test_ratios_without_a_reference_epoch_are_none():
    out = ratios(_curve([10.0, 5.0], [10.0, 20.0]), _curve([50.0], [100.0]))
    assert out[0]["vs_ref_at_epoch"] == 0.2 and out[1]["vs_ref_at_epoch"] is None
    assert out[0]["vs_ref_at_seconds"] is None  # before the reference's first point


def test_recipe_key_ignores_name_epochs_and_defaults():
    base = recipe_key(make_config({}))
    assert recipe_key(make_config({"name": "x", "epochs": 3})) == base  # renamed, extended
    assert recipe_key(make_config({"lr_g": 2.0e-4})) == base  # a default spelled out
    assert recipe_key(make_config({"lr_g": 1.0e-4})) != base  # another recipe


def test_quick_report_tables_come_from_the_json():
    import json

    from bench.report.quick import quick_table, screen_table

    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "bench" / "results" / "cpu-20261201-191617.json").read_text())
    screen = screen_table(data["screen"]).splitlines()
    assert len(screen) == 2 + len(data["screen"])
    first = data["screen"][0]
    assert screen[2].startswith(f"| {first['label']} |")
    assert f"{first['best_10k']['fd_domain']:.2f}" in screen[2]
    quick = quick_table(data["quick"])
    now, before = data["quick"]["now"], data["quick"]["before"]
    b, n = before["winner_10k"]["fd_domain"], now["winner_10k"]["fd_domain"]
    assert f"| winner's fd_domain, 10k vs test | {b:.2f} | {n:.2f} |" in quick.splitlines()
    assert f"x{now['winner_10k']['fd_domain'] / before['winner_10k']['fd_domain']:.2f}" in quick


def test_the_budget_table_compares_full_curves_at_one_cpu_budget():
    from bench.report.quality import at_budget, budget_table

    quality = {
        "epochs": 2,
        "recipes": {
            "slow": {"curve": _curve([40.0, 10.0], [100.0, 300.0])},  # CPU s 200, 600
            "fast": {"curve": _curve([20.0, 15.0], [100.0, 200.0])},  # CPU s 200, 400
            "short": {"curve": _curve([1.0], [10.0])},  # one epoch of two: left out
        },
    }
    budget, rows = at_budget(quality)
    assert budget == 400.0  # the most CPU seconds every full curve reaches
    assert [r["recipe"] for r in rows] == ["fast", "slow"]
    assert rows[0]["fd_domain"] == pytest.approx(15.0) and rows[0]["epochs_done"] == 2
    assert rows[1]["fd_domain"] == pytest.approx(20.0)  # halfway in log from 40 to 10
    assert rows[1]["epochs_done"] == 1
    assert budget_table(quality).splitlines()[3] == "| slow | 20.00 | 1 | 1.33 |"


def test_every_recipe_gets_its_curve_and_ratios_to_the_same_reference(tmp_path, monkeypatch):
    import bench.rows.quality as bq

    def curve(fds):
        return [{**r, "class_coverage_min": 0.1} for r in _curve(fds, [10.0, 20.0])]

    monkeypatch.setattr(bq, "run_textbook", lambda path, *a: curve([80.0, 40.0]))
    runs = {}

    def fake_gan(label, preset, overrides, *a):
        runs[label] = (preset, overrides)
        return curve([20.0, 20.0]), {"name": label}

    monkeypatch.setattr(bq, "run_gan", fake_gan)
    out = bq.bench_quality(["fmnist", "v=fmnist"], 2, tmp_path, "data", extra={"v": ["lr_g=1"]})
    assert list(out["recipes"]) == ["textbook", "fmnist", "v"]
    assert runs == {"fmnist": ("fmnist", []), "v": ("fmnist", ["lr_g=1"])}
    assert [r["vs_ref_at_epoch"] for r in out["recipes"]["v"]["ratios"]] == [0.25, 0.5]
    assert out["jobs"] == 1 and out["recipes"]["v"]["overrides"] == ["lr_g=1"]
