"""The tuning-efficiency bench's bookkeeping: trial-epochs to within 5%, the budget, the table."""

import json

import pytest

from bench.report.plots import search as plot
from bench.report.search import methods_table as table
from bench.rows.search import grid, key, summary


def test_summary_counts_trial_epochs_to_within_five_percent():
    values = [30.0, 20.0, 12.0, 10.6, 9.0, 11.0]
    s = summary(values, best=10.0, budget=3)
    assert s["trial_epochs"] == 6 and s["best"] == 9.0
    assert s["epochs_to_within_5pct"] == 5  # 10.6 is 6% off; 9.0 is within
    assert s["best_within_budget"] == 12.0
    assert summary([30.0, 20.0], best=10.0, budget=3)["epochs_to_within_5pct"] is None


def test_the_grid_is_27_distinct_configs():
    points = grid()
    assert len(points) == 27 and len({key(p) for p in points}) == 27
    assert key({"arch": "dcgan", "lr_g": "5.0e-4", "lr_d": 0.001}) == "dcgan|0.0005|0.001"


def test_report_table_and_plot(tmp_path):
    run = {"trial_epochs": 9, "best": 9.0, "epochs_to_within_5pct": 4, "best_within_budget": 9.5}
    search = {
        "metric": "fd_domain, 1000 samples",
        "budget_trial_epochs": 9,
        "exhaustive": {**run, "trial_epochs": 27, "best": 8.8, "trace": [12.0, 9.0, 8.8]},
        "methods": {
            "random+asha": [{**run, "trace": [11.0, 9.0]}, {**run, "epochs_to_within_5pct": None}],
            "pbt": [{**run, "trace": [10.0, 9.2, 9.0]}],
        },
    }
    text = table(search)
    assert "| every trial to max_t | - | 27 | 8.8 | 27 (all) | order-dependent |" in text
    assert "| random+asha | 2 | 9 (9-9) | 9 (9-9) | 1/2 seeds, median 4 |" in text
    plot(search, tmp_path / "search.png")
    assert (tmp_path / "search.png").stat().st_size > 1000
    with pytest.raises(KeyError):
        table({"metric": "x"})


def test_table_methods_replay_the_table_through_a_running_ray(ray_session, tune_base, tmp_path):
    """The table's trials find it although Ray was up before the table was written (as when the
    row runs after another Ray row in the same process)."""
    import ray.cloudpickle

    import bench.rows.search as search

    ray.cloudpickle.register_pickle_by_value(search)  # as the row does: workers can't import bench/
    points = [{"arch": "dcgan", "lr_g": 2.0e-4, "lr_d": d} for d in (2.0e-4, 5.0e-4)]
    table = {search.key(p): [9.0 - i, 8.0 - i, 7.0 - i] for i, p in enumerate(points)}
    (tmp_path / "table.json").write_text(json.dumps(table))
    top = {
        "searcher": "random",
        "search": {
            "arch": {"choice": ["dcgan"]},
            "lr_g": {"choice": [2.0e-4]},
            "lr_d": {"grid_search": [2.0e-4, 5.0e-4]},
        },
        "scheduler": {"type": "fifo"},  # every trial to its end (ASHA would stop the worse)
        "resources": {"cpu": 1},
        "num_samples": 1,
    }
    trainable = search.table_trainable(tmp_path / "table.json")
    values, _ = search.run_method("replay", top, dict(tune_base), tmp_path, trainable, 0)
    assert sorted(values) == sorted(v for curve in table.values() for v in curve)
