"""The limited-data bench's summaries and report tables, from curves of the JSON's shape."""

import pytest

from bench.report.plots import small as plot
from bench.report.small import aims_note, curve_table, summary_table
from bench.rows.small import gan_config, summary


def _curve(fds, every=50, size=1000):
    return [
        {
            "epoch": every * (i + 1),
            "images_seen": every * (i + 1) * size,
            "fd_domain": fd,
            "class_coverage_min": 0.08,
            "memorisation_ratio": 1.2 - 0.1 * i,
            "near_copies": 0.001 * i,
            "seconds": 100.0 * (i + 1),
            "cpu_seconds": 90.0 * (i + 1),
            "checkpoint": f"ckpt_{every * (i + 1):06d}.pt",
        }
        for i, fd in enumerate(fds)
    ]


def test_summary_against_the_textbooks_best():
    ref = _curve([80.0, 30.0, 45.0])
    rec = _curve([20.0, 8.0, 12.0])
    s = summary(rec, ref)
    assert s["best_fd_domain"] == 8.0 and s["best_epoch"] == 100
    assert s["last_over_best"] == pytest.approx(1.5)
    assert s["best_vs_textbook_best"] == pytest.approx(8.0 / 30.0)
    assert s["last_memorisation_ratio"] == pytest.approx(1.0)
    assert s["min_memorisation_ratio"] == pytest.approx(1.0)
    assert "best_vs_textbook_best" not in summary(rec, [])


def test_report_tables_and_plot_come_from_the_json(tmp_path):
    rec = _curve([20.0, 8.0, 12.0])
    rec[1].update(
        {f"utility_{k}": v for k, v in (("real", 0.79), ("real_plus_generated", 0.81))},
        utility_generated_only=0.7,
        utility_real_std=0.01,
        utility_real_plus_generated_std=0.02,
        utility_generated_only_std=0.03,
    )
    ref = _curve([80.0, 30.0])
    small = {
        "sizes": {
            "1000": {
                "epochs": 1000,
                "recipes": {
                    "textbook": {"curve": ref, "summary": summary(ref, ref)},
                    "small": {"curve": rec, "summary": summary(rec, ref)},
                },
            }
        }
    }
    lines = summary_table(small).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 1,000 | textbook | 100 of 1000 |")
    assert "| 8.00 (100) | 0.27 | 12.00 | 1.50 |" in lines[3]
    assert "79.0% ± 1.0% / 81.0% ± 2.0% / 70.0% ± 3.0%" in lines[3]
    assert len(curve_table(small).splitlines()) == 2 + 5
    plot(small, tmp_path / "small.png", "title")
    assert (tmp_path / "small.png").stat().st_size > 5000


def test_a_recipe_is_measured_on_the_subset_at_28_px(tmp_path):
    cfg = gan_config("small", [], 1000, 1000, 50, str(tmp_path), "cpu")
    assert (cfg.dataset, cfg.limit, cfg.balanced, cfg.image_size, cfg.channels) == (
        "fashion_mnist",
        1000,
        True,
        28,
        1,
    )
    assert cfg.checkpoint_every == 50 and cfg.eval_every == -1 and cfg.keep_checkpoints > 20


def test_the_aims_note_names_only_recipes_that_meet_both_aims_on_every_subset_to_the_end():
    ref = _curve([30.0, 24.0, 27.0])  # the textbook's best: 24
    runs = {  # best / textbook's best, last / best
        "steady": [20.0, 7.0, 9.0],  # 0.29, 1.29: meets both
        "late-collapse": [20.0, 6.0, 10.0],  # 0.25, 1.67
        "behind": [20.0, 9.0, 9.0],  # 0.375
        "stopped": [20.0, 6.0],  # met so far, but not run to its end
    }

    def size(epochs_run: dict) -> dict:
        recipes = {"textbook": {"curve": ref, "summary": summary(ref, ref)}}
        for name, fds in epochs_run.items():
            recipes[name] = {"curve": _curve(fds), "summary": summary(_curve(fds), ref)}
        return {"epochs": 150, "recipes": recipes}

    both = {"sizes": {"1000": size(runs), "5000": size(runs)}}
    note = aims_note(both)
    assert "on each (a best at most ⅓" in note and ": `steady`." in note.replace("\n  ", " ")
    assert "small` preset" not in note  # only a note on the preset once small-plus-r1 meets them
    one = {"sizes": {"1000": size(runs), "5000": size({"late-collapse": runs["steady"]})}}
    assert ": none." in aims_note(one).replace("\n  ", " ")  # steady never ran on 5,000
    plus = {"sizes": {"1000": size({"small-plus-r1": runs["steady"]})}}
    assert "The `small` preset now carries its R1" in aims_note(plus).replace("\n  ", " ")


def test_the_augment_section_sets_each_mix_against_real_alone_trained_as_long():
    from bench.report.augment import MIXES, section

    def m(acc, **more):
        return {"accuracy": acc, "std": 0.004, "seconds": 1.0, **more}

    mixes = {name: m(0.79) for name in MIXES}
    mixes.update(
        {
            "1:1": m(0.80),
            "real, 2.5x steps": m(0.83),
            "1:1, 2.5x steps": m(0.84),  # +1.0 against real trained as long, not +5.0
            "1:1, a larger draw": m(0.78, generated=50_000),
            "1:1, truncated z": m(0.79, generated=10_000),
            "1:1, filtered": {"accuracy": None, "std": None, "seconds": 0.0, "generated": 0},
        }
    )
    res = {
        "machine": {"cpu": "AMD EPYC", "cores": 2},
        "augment": {
            "steps": 800,
            "truncation": 0.6,
            "filter_p": 0.5,
            "fine_tune": 0.5,
            "recipes": {
                "small-plus-r1": {"1000": {"epoch": 750, "fd_domain": 2.0, "mixes": mixes}}
            },
        },
    }
    text = section([(res, "cpu-x.json")])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "80.0% ± 0.4% (+1.0)" in rows["1:1"]
    assert "84.0% ± 0.4% (+1.0)" in rows["1:1, 2.5x steps"]
    assert "78.0% ± 0.4% (-1.0)" in rows["1:1, a larger draw"] and "50,000" in text
    assert "nothing kept" in rows["1:1, filtered"]
    assert "small-plus-r1 on 1,000 images (epoch 750)" in text and "cpu-x.json" in text
    assert "small-plus-r1: on 1,000 images the best is 1:1, +1.0 points" in text.replace("\n", " ")
    # a later run adds its columns, each against the real classifier of its own run
    wide = {name: m(0.70) for name in MIXES} | {"1:1": m(0.75)}
    later = {
        **res,
        "augment": {
            **res["augment"],
            "recipes": {"small-wide": {"1000": {"epoch": 900, "fd_domain": 1.5, "mixes": wide}}},
        },
    }
    text = section([(res, "cpu-x.json"), (later, "cpu-y.json")])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert rows["1:1"].rstrip(" |").endswith("75.0% ± 0.4% (+5.0)")
    assert "small-wide on 1,000 images (epoch 900)" in text and "cpu-y.json" in text.replace(
        "\n", " "
    )
    assert "small-wide: on 1,000 images the best is 1:1, +5.0 points" in text.replace("\n", " ")
    with pytest.raises(ValueError, match="one table"):
        section(
            [(res, "cpu-x.json"), ({**later, "augment": {**later["augment"], "steps": 60}}, "q")]
        )
