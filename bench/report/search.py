"""The tuning-efficiency section (the `search` row): for each method the trial-epochs it used, its
best, the trial-epochs it needed to come within 5% of the exhaustive best and its best within a
third of the exhaustive budget; the plot draws each method's best so far (first seed of each)."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.report import plots
from bench.report.markdown import table

INTRO = """\
How much of an exhaustive search each tuning method needs (`python -m bench search --search-table
... --search-population pbt`, `{source}`): 27 configs of the quick model (arch x
lr_g x lr_d, each of 3 values; `quick.yaml`'s base on its own 8192 images, scored by a
1000-sample fd_domain after every epoch) trained once each to max_t 9, which is the exhaustive
search, 243 trial-epochs (trained in the same session, 2 configs side by side, in 24 minutes;
passed back in by `--search-table`: CPU training is deterministic, so the curves do not change).
Random search and Optuna's TPE under ASHA (reduction factor 3) then run as real Ray experiments,
27 trials, 2 at a time, whose trials report those measured curves instead of training again; 10
seeds each. PBT cannot be read off the table (an exploit changes what follows), so it trained for
real in the same run: 27 trials to epoch 9, 2 at a time (one CPU each; no `max_concurrent`,
which would split the population), exploiting every 3 epochs. Median (range) over seeds:
"""

NOTES = """\
- Optuna's TPE under ASHA with a grace period of 3 is the method to use on a search like this: it
  found the exhaustive best (4.477) in 9 of 10 seeds, and came within 5% of it within a third of
  the exhaustive trial-epochs (81) in 5 of the 10 (after 8, 11, 26, 65 and 68; the other four
  seeds that found it needed 88-176). So the goal, within 5% at a third of the cost, is met by
  half the seeds and at the median over the 10 (78 trial-epochs, between 68 and 88; the seed that
  never got there counted as never), not by every seed. Random search under ASHA with the same
  grace period found it in 5 of
  10 seeds (2 within 81).
- Why not every seed: only 2 of the 243 measured points are within 5% of the best (modified,
  lr_g 2e-4, lr_d 1e-3 at its epochs 8 and 9: 4.48 and 4.63), and that config ranks 21st of 27
  after epoch 1, 17th after epoch 2, 4th after epoch 3 and first from epoch 4. A method has to
  pick that one config and train it to epoch 8 with 73 trial-epochs left for the other 26.
- ASHA's grace period of 1 (what `quick.yaml` uses for its 3-epoch first look) stops the winner
  after epoch 1: random search never came within 5% in 10 seeds (best 5.16-5.77, 1.15-1.29x),
  Optuna in 2. For a GAN tune, give ASHA a grace period of a third of `max_t` or more.
- PBT, at the full 243 trial-epochs, ended at 2.774, 0.62x the exhaustive best: its 27 trials
  draw lr_g and lr_d from the continuous range rather than the grid's 3 values, and its four best
  trials (2.77-3.60, all `modified`, lr_g 2.1e-4 to 3.4e-4) all beat every grid point; 3 of those
  4 had exploited a better trial's checkpoint, the best one had not. Within 81 trial-epochs it
  has only epoch-3 scores (8.64): its exploits wait until every trial has reached epoch 3. One
  seed; a 1000-sample fd_domain moves by a few percent from one epoch to the next (4.48 then 4.63
  for the grid's best), so read 2.77 against 4.48 as PBT's continuous search plus exploitation
  beating the grid, not as a precise factor.
- Random search draws 27 times from 27 configs with replacement and so leaves about a third of
  them undrawn; `searcher: grid` tries each once.
- On 1024 images (`cpu-20261205-070052.json`, the earlier scale of this bench) epoch-1 scores
  were 500-2800 (nothing learned yet) and the same ranking of methods held: Optuna+ASHA with
  grace 3 found the best in 3 of 3 seeds, no method came within 5% at 81 trial-epochs reliably;
  PBT reached 28.42 and PB2 29.97 (1.75x and 1.84x the exhaustive best). PB2 was not rerun at
  8192 images.
"""


def _mid(values: list) -> str:
    """Median (and range) over seeds; how many seeds got there where some never did."""
    if any(v is None for v in values):
        reached = [v for v in values if v is not None]
        return f"{len(reached)}/{len(values)} seeds" + (
            f", median {statistics.median(reached):g}" if reached else ""
        )
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def methods_table(search: dict) -> str:
    """One row per method, after the exhaustive reference."""
    full, budget = search["exhaustive"], search["budget_trial_epochs"]
    header = ["method", "seeds", "trial-epochs", f"best {search['metric'].split(',')[0]}"]
    header += ["trial-epochs to within 5% of the exhaustive best"]
    header += [f"best within {budget} trial-epochs"]
    # the reference: its cost is every trial-epoch; when it passes 5% depends only on the order
    # it happens to train the grid in
    n = full["trial_epochs"]
    rows = [
        ["every trial to max_t", "-", n, f"{full['best']:.4g}", f"{n} (all)", "order-dependent"]
    ]
    cols = ("trial_epochs", "best", "epochs_to_within_5pct", "best_within_budget")
    for name, runs in search["methods"].items():
        rows.append([name, len(runs), *(_mid([r[c] for r in runs]) for c in cols)])
    return table(header, "lrrrrr", rows)


def section(res: dict, source: str, out: Path) -> str:
    """The section's Markdown; draws search.png into out."""
    plots.search(res["search"], out / "search.png")
    return "\n".join(
        [
            INTRO.format(source=source) + "\n",
            methods_table(res["search"]) + "\n",
            "![best so far against cumulative trial-epochs, one line per method](search.png)\n",
            NOTES,
        ]
    )
