"""The quick-tune section: the screening that derived tune_configs/quick.yaml (the `screen` row),
the tune before and after (the `quick` row) and ASHA against every trial to max_t (the `asha`
row), all from one run."""

from __future__ import annotations

from bench.report.markdown import table

INTRO = """\
`tune_configs/quick.yaml` was derived by screening single trials at its budget (one CPU core, 3
epochs of 8192 images; `python -m bench screen`), each changing one thing from the
recipe of the config it replaced, and each scored like a tune's winner: its best checkpoint,
fd_domain of 10k generated against the 10k test images
(`bench/results/{source}`):
"""

SCREEN_NOTES = """\
At this budget the class-conditional G is the largest single gain (every class is drawn, and D
sees the label), the seeds' `baseline` and `modified` beat `dcgan` per trial, lr 5e-4 beats 2e-4,
and the residual pair is far too slow to start (it wins only given full epochs, see
[Recipes](#recipes)). The rarest-class share is noisy from one trial to the next (a learning
rate changed in the fourth digit moved it from 8.6% to 2.3% in a trial run): a tune's winner is
ranked by fd_domain alone.

`python -m bench quick` then runs both configs through the same tune job, one after
the other on the same machine, and scores each winner the same way:
"""

ASHA_NOTES = """\
The sheet above is that run's: one column per class (T-shirt, trouser, pullover, dress, coat,
sandal, shirt, sneaker, bag, ankle boot), one row per fixed noise vector. ASHA's cut after
epoch 1 is aggressive: running all {trials} trials to epoch {max_t} (`python -m bench asha`) took
{full_epochs} trial-epochs and {full_s} s and found {full_best} (a `{full_arch}` trial that starts
slowly), against {asha_epochs} trial-epochs, {asha_s} s and {asha_best} with ASHA, both by the
tune's 1000-sample fd_domain. The quick tune trades that for a first result in under three
minutes; `fmnist.yaml` stops no trial before epoch 5 and halves, not thirds, at each rung.
"""


def screen_table(rows: list[dict]) -> str:
    """One line per screened recipe: training CPU s, the 10k fd_domain and the rarest class."""
    header = ["recipe (one trial, 3 epochs of 8192 images)", "train CPU s"]
    header += ["fd_domain, 10k vs test", "rarest class"]
    cells = [
        [
            r["label"],
            f"{r['train_cpu_s']:.1f}",
            f"{r['best_10k']['fd_domain']:.2f}",
            f"{100 * r['best_10k']['class_coverage_min']:.1f}%",
        ]
        for r in rows
    ]
    return table(header, "lrrr", cells)


def quick_table(q: dict) -> str:
    """The tune before and now: wall, trial-epochs, the winner and its 10k score."""

    def winner(side: dict) -> str:
        w = side["winner"]
        return f"{w['arch']}, {w['loss']}, lr_g {w['lr_g']:.2g}, lr_d {w['lr_d']:.2g}"

    b, n = q["before"], q["now"]
    cells = [
        ["config", f"`{b['config']}`", f"`{n['config']}`"],
        ["trials", b["trials"], n["trials"]],
        [
            "trial-epochs (images each)",
            f"{b['trial_epochs']} ({b['images_per_epoch']})",
            f"{n['trial_epochs']} ({n['images_per_epoch']})",
        ],
        ["tune wall time, 2 CPU cores", f"{b['wall_s']:.0f} s", f"{n['wall_s']:.0f} s"],
        ["winner", winner(b), winner(n)],
        [
            "winner's fd_domain, 10k vs test",
            f"{b['winner_10k']['fd_domain']:.2f}",
            f"{n['winner_10k']['fd_domain']:.2f}",
        ],
        [
            "winner's rarest class",
            f"{100 * b['winner_10k']['class_coverage_min']:.1f}%",
            f"{100 * n['winner_10k']['class_coverage_min']:.1f}%",
        ],
    ]
    ratio = (
        f"fd_domain x{q['fd_domain_ratio']:.2f}, wall time x{q['wall_ratio']:.2f} (now / before)."
    )
    return table(["", "before", "now"], "lll", cells) + "\n\n" + ratio


def asha_numbers(asha: dict) -> dict:
    a, f = asha["asha"], asha["full"]
    return {
        "trials": f["trials"],
        "max_t": asha["max_t"],
        "full_epochs": f["trial_epochs"],
        "full_s": f"{f['wall_s']:.0f}",
        "full_best": f"{f['best_metric']:.2f}",
        "full_arch": f["best_trial"]["arch"],
        "asha_epochs": a["trial_epochs"],
        "asha_s": f"{a['wall_s']:.0f}",
        "asha_best": f"{a['best_metric']:.2f}",
    }


def section(res: dict, source: str) -> str:
    """The section's Markdown (the comparison sheet is a tune's output, not redrawn here)."""
    return "\n".join(
        [
            "## The quick tune, before and after\n",
            INTRO.format(source=source),
            screen_table(res["screen"]) + "\n",
            SCREEN_NOTES,
            quick_table(res["quick"]) + "\n",
            "![comparison sheet of the quick tune](comparison.png)\n",
            ASHA_NOTES.format(**asha_numbers(res["asha"])),
        ]
    )
