"""The limited-data section: each recipe on 1,000 and 5,000 images to about 1M images seen against
the textbook DCGAN on the same subset (the `small` row), its tables, plot and fixed text."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

from bench.report import plots
from bench.report.markdown import fmt, table

INTRO = """\
What most users bring: a few thousand images, trained long. `python -m bench small`
trains each recipe on a fixed class-balanced Fashion-MNIST subset (`limit=N balanced=true`) of
1,000 images for 1,000 epochs and of 5,000 for 200 (about 1M images seen either way), beside
the textbook DCGAN on the same subset, keeps a checkpoint every 50 (10) epochs and scores each:
fd_domain of 10k generated images against the 10k **test** images (not the training subset),
the rarest class, memorisation; utility at a finished run's best and last checkpoint. Hours on a
CPU: runs and scores live in `~/.cache/gan-bench` (`GAN_BENCH_WORK`) and a rerun resumes;
`--score-only` scores what is kept so far. Table and plot by `python -m bench report` from
`bench/results/{source}` ({cores} CPU cores, one thread a run):
"""

NOTES = """\
- On {n1} images the `small` preset as this run measured it (before R1) has a best {ratio}x the
  textbook's best ({best} against {tb_best}), ends within {last_over_best}x of its own best, and
  does not copy: its images are as far from their nearest training image as new test images are
  ({mem}), with {copies} near-copies (about 1% for new real images).
- DiffAugment always on (`small-diffaug`, the preset's first form) learned several times slower:
  {da150} against {s150} at epoch 150, {da_best} at its best. With LeCam, D never called more than
  69% of real images real in an epoch (ADA augments above 80%), so the augmentation probability
  stayed at 0 throughout: at this size and width, D did not memorise the set within 1M images.
- A classifier trained on the {n1} real images reaches {u_real}; on generated images alone
  {u_gen}; on the real images plus 10k generated ones {u_both}: {gain:+.1f} points, short of the +2
  we aim for.
- On {n5} images that preset's best is {ratio5}x the textbook's ({best5} against
  {tb_best5}, epoch {ep5}), but its last checkpoint is {last5} ({last_over_best5}x its best: the
  curve wanders between {lo5} and {hi5} over its last 50 epochs, not a collapse, yet above the
  1.5x we aim for); memorisation {mem5}. Here the generated images cost the classifier
  accuracy: real {u_real5}, real plus generated {u_both5} ({gain5:+.1f} points), generated
  alone {u_gen5}.
"""

LATER = """\
Later runs (on {hosts}) of the same subsets, seed and scoring, set against the textbook DCGAN above
({sources}):

- Annealed for a stable end (`small-anneal`: learning rates decayed to 5% of their start instead of
  20%, G_ema's half-life 5% of the run instead of ema_decay's fixed 22k images). On {n5} images its
  last checkpoint is its best ({a_best5} at epoch {a_ep5}, {a_ratio5}x the textbook's), and its
  last 50 epochs stay between {a_lo5} and {a_hi5}. On {n1} images its best is {a_best} at epoch
  {a_ep} ({a_ratio}x the textbook's, above the ⅓ aimed for, where `small` reached {best}), and it
  ends {a_last_over_best}x its best. The preset keeps its schedule: `gan train` keeps the best
  evaluated checkpoint (`best.pt`), which `gan generate`, `gan evaluate` and `gan serve` read, so
  the best counts more than the last. Where the last checkpoint is the one used, set
  `lr_end=0.05 ema_horizon=0.05`.
- Utility, at `small-anneal`'s best: on {n1} images {a_u_real} real, {a_u_both} real plus
  generated, {a_u_gen} generated alone; on {n5} images {a_u_real5}, {a_u_both5}, {a_u_gen5}. The
  generated images carry the classes (a classifier learns {a_u_gen} from them alone) but nothing
  the real images lack: added to them, {a_gain:+.1f} points on {n1} images, {a_gain5:+.1f} on {n5}.
{r1}{wide}{aims}"""


def best_row(rec: dict) -> dict:
    """A recipe's scored checkpoint at its best epoch."""
    return next(r for r in rec["curve"] if r["epoch"] == rec["summary"]["best_epoch"])


def summary_table(small: dict) -> str:
    """One row per subset and recipe: best and last fd_domain, memorisation, utility."""
    rows = []
    for size in sorted(small["sizes"], key=int):
        entry = small["sizes"][size]
        for name, rec in entry["recipes"].items():
            s, curve = rec["summary"], rec["curve"]
            best = best_row(rec)
            util = "–"
            if "utility_real" in best:
                util = " / ".join(
                    f"{best[f'utility_{k}']:.1%} ± {best[f'utility_{k}_std']:.1%}"
                    for k in ("real", "real_plus_generated", "generated_only")
                )
            rows.append(
                [
                    f"{int(size):,}",
                    name,
                    f"{curve[-1]['epoch']} of {entry['epochs']}",
                    f"{s['best_fd_domain']:.2f} ({s['best_epoch']})",
                    fmt(s.get("best_vs_textbook_best")),
                    f"{s['last_fd_domain']:.2f}",
                    f"{s['last_over_best']:.2f}",
                    f"{s['last_memorisation_ratio']:.2f}",
                    f"{s['last_near_copies']:.1%}",
                    util,
                ]
            )
    header = ["images", "recipe", "epochs done", "best fd_domain (epoch)", "× textbook's best"]
    header += ["last fd_domain", "last / best", "memorisation, last", "near-copies, last"]
    header += ["classifier accuracy: real / real + generated / generated (best checkpoint)"]
    return table(header, "rlrrrrrrrl", rows)


def curve_table(small: dict) -> str:
    """Every scored checkpoint."""
    rows = [
        [
            f"{int(size):,}",
            name,
            r["epoch"],
            f"{r['fd_domain']:.2f}",
            f"{r['class_coverage_min']:.1%}",
            f"{r['memorisation_ratio']:.2f}",
            f"{r['near_copies']:.1%}",
            f"{r['seconds']:.0f} ({r['cpu_seconds']:.0f})",
        ]
        for size in sorted(small["sizes"], key=int)
        for name, rec in small["sizes"][size]["recipes"].items()
        for r in rec["curve"]
    ]
    header = ["images", "recipe", "epoch", "fd_domain", "rarest class", "memorisation"]
    header += ["near-copies", "train s (CPU s)"]
    return table(header, "rlrrrrrr", rows)


def _figures(recipes: dict, tag: str = "", name: str = "small", prefix: str = "") -> dict:
    """A recipe's figures on one subset, against that subset's textbook DCGAN; each key starts
    with `prefix` and ends in `tag`."""
    s = recipes[name]["summary"]
    best = best_row(recipes[name])
    figures = {
        "ratio": f"{s['best_vs_textbook_best']:.2f}",
        "best": f"{s['best_fd_domain']:.2f}",
        "tb_best": f"{recipes['textbook']['summary']['best_fd_domain']:.2f}",
        "last_over_best": f"{s['last_over_best']:.2f}",
        "mem": f"{s['last_memorisation_ratio']:.2f}",
        "u_real": f"{best['utility_real']:.1%}",
        "u_gen": f"{best['utility_generated_only']:.1%}",
        "u_both": f"{best['utility_real_plus_generated']:.1%}",
        # points between the rounded percentages, as they read
        "gain": round(100 * best["utility_real_plus_generated"], 1)
        - round(100 * best["utility_real"], 1),
    }
    return {prefix + k + tag: v for k, v in figures.items()}


def numbers(small: dict) -> dict:
    """The figures NOTES quotes, on the 1,000- and the 5,000-image subsets."""
    recipes = small["sizes"]["1000"]["recipes"]
    s = recipes["small"]["summary"]
    curve = {k: {r["epoch"]: r for r in v["curve"]} for k, v in recipes.items()}
    big = small["sizes"]["5000"]["recipes"]
    tail = [r["fd_domain"] for r in big["small"]["curve"]]
    tail = tail[-(50 // 10) :]  # its last 50 epochs, a score every 10
    return {
        "n1": "1,000",
        "copies": f"{s['last_near_copies']:.1%}",
        "da150": f"{curve['small-diffaug'][150]['fd_domain']:.1f}",
        "s150": f"{curve['small'][150]['fd_domain']:.2f}",
        "da_best": f"{recipes['small-diffaug']['summary']['best_fd_domain']:.2f}",
        **_figures(recipes),
        "n5": "5,000",
        "ep5": big["small"]["summary"]["best_epoch"],
        "last5": f"{big['small']['summary']['last_fd_domain']:.2f}",
        "lo5": f"{min(tail):.1f}",
        "hi5": f"{max(tail):.1f}",
        **_figures(big, "5"),
    }


def merged(small: dict, later: list[dict]) -> dict:
    """The first run's subsets with the later runs' recipes added, each later recipe's best set
    against the first run's textbook DCGAN on the same subset (same seed, subset and scoring: the
    same reference curve)."""
    out = copy.deepcopy(small)
    for run in later:
        for size, entry in run["small"]["sizes"].items():
            target = out["sizes"].setdefault(size, {"epochs": entry["epochs"], "recipes": {}})
            ref = target["recipes"].get("textbook")
            for name, rec in entry["recipes"].items():
                rec = copy.deepcopy(rec)
                if ref is not None and "best_vs_textbook_best" not in rec["summary"]:
                    best = rec["summary"]["best_fd_domain"]
                    rec["summary"]["best_vs_textbook_best"] = (
                        best / ref["summary"]["best_fd_domain"]
                    )
                target["recipes"][name] = rec
    return out


def later_numbers(small: dict) -> dict:
    """The figures LATER quotes, from the merged runs."""
    one, five = small["sizes"]["1000"]["recipes"], small["sizes"]["5000"]["recipes"]
    figures = {}
    for recipes, tag in ((one, ""), (five, "5")):
        s = recipes["small-anneal"]["summary"]
        curve = recipes["small-anneal"]["curve"]
        tail = [r["fd_domain"] for r in curve if r["epoch"] > curve[-1]["epoch"] - 50]
        figures.update(_figures(recipes, tag, "small-anneal", "a_"))
        figures.update(
            {
                f"a_ep{tag}": s["best_epoch"],
                f"a_lo{tag}": f"{min(tail):.2f}",
                f"a_hi{tag}": f"{max(tail):.2f}",
            }
        )
    return figures


def recipe_note(small: dict, name: str, what: str, against: str) -> str:
    """A bullet of LATER on recipe `name` (described by `what`) on each subset it ran on, set
    against recipe `against` there ('' where it never ran)."""
    clauses = []
    for size in sorted(small["sizes"], key=int):
        recipes = small["sizes"][size]["recipes"]
        if name not in recipes:
            continue
        s, curve = recipes[name]["summary"], recipes[name]["curve"]
        other = recipes[against]
        ref = {r["epoch"]: r["fd_domain"] for r in other["curve"]}
        same = [r for r in curve if r["epoch"] in ref]
        wins = sum(r["fd_domain"] < ref[r["epoch"]] for r in same)
        done, epochs = curve[-1]["epoch"], small["sizes"][size]["epochs"]
        clause = (
            f"on {int(size):,} images to epoch {done} of {epochs}: best "
            f"{s['best_fd_domain']:.2f} at epoch {s['best_epoch']} "
            f"({s['best_vs_textbook_best']:.2f}x the textbook's), below `{against}` at {wins} of "
            f"the {len(same)} epochs both scored, "
        )
        if done < epochs:  # stopped part-way: its last checkpoint is not a run's end
            clause += "stopped there (no end of run to compare)"
        else:
            clause += (
                f"ending {s['last_over_best']:.2f}x its best (`{against}`: "
                f"{other['summary']['last_over_best']:.2f}x)"
            )
        clause += f"; memorisation {s['last_memorisation_ratio']:.2f} at its last checkpoint"
        best = best_row(recipes[name])
        if "utility_real" in best:
            clause += (
                f"; utility at its best {best['utility_real']:.1%} real, "
                f"{best['utility_real_plus_generated']:.1%} real plus generated, "
                f"{best['utility_generated_only']:.1%} generated alone"
            )
        clauses.append(clause)
    if not clauses:
        return ""
    text = f"- {what}, " + ". ".join([clauses[0], *(c[:1].upper() + c[1:] for c in clauses[1:])])
    return textwrap.fill(text + ".", 99, subsequent_indent="  ", break_on_hyphens=False) + "\n"


def r1_notes(small: dict) -> str:
    """The R1 bullets of LATER, from the merged runs: on the annealed schedule and on the preset's
    own."""
    lazy = "`r1_gamma=0.1`, lazy, every 16 D steps"
    return recipe_note(
        small,
        "small-r1",
        f"R1 on real images (`small-r1`: `small-anneal` with {lazy})",
        "small-anneal",
    ) + recipe_note(
        small,
        "small-plus-r1",
        f"R1 on the preset's own schedule (`small-plus-r1`: `small` with {lazy})",
        "small",
    )


def aims_note(small: dict) -> str:
    """Which recipes, run to their end on every subset, meet both aims on each: a best at most
    a third of the textbook's and a last checkpoint within 1.5x of the recipe's own best."""
    sizes = sorted(small["sizes"], key=int)
    met = []
    for name in {n for s in sizes for n in small["sizes"][s]["recipes"]} - {"textbook"}:
        runs = [small["sizes"][s]["recipes"].get(name) for s in sizes]
        if all(
            r
            and r["curve"][-1]["epoch"] == small["sizes"][s]["epochs"]
            and r["summary"]["best_vs_textbook_best"] <= 1 / 3
            and r["summary"]["last_over_best"] <= 1.5
            for s, r in zip(sizes, runs, strict=True)
        ):
            met.append(name)
    said = " and ".join(f"`{n}`" for n in sorted(met)) or "none"
    text = (
        f"- Run to their end on every subset, the recipes that meet both aims on each (a best at "
        f"most ⅓ of the textbook's, a last checkpoint within 1.5x of its own best): {said}. "
    )
    if "small-plus-r1" in met:
        text += (
            "The `small` preset now carries its R1 (`r1_gamma: 0.1` in gan/presets/small.yaml); "
            "the `small` rows above are the preset before it (each run's config is in its JSON)."
        )
    return textwrap.fill(text.rstrip(), 99, subsequent_indent="  ", break_on_hyphens=False) + "\n"


def section(res: dict, source: str, later: list[tuple[dict, str]], out: Path) -> str:
    """The section's Markdown, from the first run and the later runs that add recipes to it;
    draws small.png into out."""
    m = res["machine"]
    small = merged(res["small"], [run for run, _ in later])
    where = m["gpu"] or f"{m['cores']} CPU cores"
    plots.small(small, out / "small.png", f"fd_domain (10k vs the test images, log) on {where}")
    n = numbers(res["small"])
    return "\n".join(
        [
            "### Limited data: 1,000 and 5,000 images, 1M images seen\n",
            INTRO.format(source=source, cores=m["cores"]),
            summary_table(small) + "\n",
            "![fd_domain against images seen on 1,000 and 5,000 training images](small.png)\n",
            NOTES.format(**n),
            LATER.format(
                hosts=" and ".join(
                    sorted(
                        {f"{r['machine']['cpu']}, {r['machine']['cores']} cores" for r, _ in later}
                    )
                ),
                sources=", ".join(f"`bench/results/{name}`" for _, name in later),
                r1=r1_notes(small),
                wide=recipe_note(
                    small,
                    "small-wide",
                    "A third more channels (`small-wide`: the preset, R1 included, at `width=32` "
                    "instead of 24, 1.8x the compute)",
                    "small-plus-r1",
                ),
                aims=aims_note(small),
                **n,
                **later_numbers(small),
            ),
        ]
    )
