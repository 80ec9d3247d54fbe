"""The report's section on ways of adding generated images to the real set (the `augment` row)."""

from __future__ import annotations

import textwrap

from bench.report.markdown import table

INTRO = """\
`python -m bench augment` ({sources}) takes the best checkpoint of a limited-data run above and
trains the utility classifier of `gan evaluate --utility` (the same small classifier, {steps} steps
of 64 images, classifier seeds 0-2, tested on the 10,000 test images) on the real subset with the
run's generated images mixed in other ways. Each column is one run's: every mix against the real
subset alone and the 1:1 mix that `gan evaluate` reports, in the same run:
"""

# what each mix trains on, in the table's order (the keys are the row's)
MIXES = {
    "real": "the real subset alone (the reference)",
    "1:1": "half of each batch real, half from 10,000 generated: what `gan evaluate` reports",
    "3:1": "a quarter of each batch generated",
    "1:3": "three quarters of each batch generated",
    "1:1, a larger draw": "1:1 from {larger:,} generated images",
    "1:1, truncated z": "1:1, z scaled by {truncation} (images nearer each class's mode)",
    "1:1, filtered": "1:1, only generated images that a classifier of the real subset gives their "
    "drawn class at p > {filter_p}",
    "1:1, 2.5x steps": "1:1, trained 2.5 times as long",
    "real, 2.5x steps": "the real subset alone, trained 2.5 times as long",
    "generated, then real": "the first {first:.0%} of the steps on generated images only, the "
    "rest on real ones",
}


def _ref(name: str, mixes: dict) -> float:
    """The real-only accuracy a mix is against: trained as long as it."""
    return mixes["real, 2.5x steps" if "2.5x" in name else "real"]["accuracy"]


def _cell(name: str, mixes: dict) -> str:
    m = mixes[name]
    if m["accuracy"] is None:
        return "nothing kept"
    return (
        f"{m['accuracy']:.1%} ± {m['std']:.1%} ({100 * (m['accuracy'] - _ref(name, mixes)):+.1f})"
    )


def _best(size: str, mixes: dict) -> str:
    """Which mix with generated images beats real alone (trained as long) by most, on one subset."""
    gains = {
        n: m["accuracy"] - _ref(n, mixes)
        for n, m in mixes.items()
        if not n.startswith("real") and m["accuracy"] is not None
    }
    name = max(gains, key=gains.__getitem__)
    return f"on {int(size):,} images the best is {name}, {100 * gains[name]:+.1f} points"


def _fill(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), 99, break_on_hyphens=False) + "\n"


def section(runs: list[tuple[dict, str]]) -> str:
    """The section's Markdown from the augment row's runs (res, file name): one column per
    recipe and subset of each run, each against the real subset measured in its own run."""
    cols = [
        (res["augment"], label, size, rec)
        for res, _ in runs
        for label, sizes in res["augment"]["recipes"].items()
        for size, rec in sizes.items()
    ]
    first = runs[0][0]["augment"]
    for aug, *_ in cols:  # one MIXES text describes every column
        kept = ("steps", "truncation", "filter_p", "fine_tune")
        if any(aug[k] != first[k] for k in kept):
            raise ValueError(f"augment runs differ in {kept}: one table cannot hold them")
    header = ["mix", "what the classifier trains on"]
    header += [
        f"{label} on {int(size):,} images (epoch {rec['epoch']})" for _, label, size, rec in cols
    ]
    rows = []
    larger = next((rec["mixes"]["1:1, a larger draw"]["generated"] for *_, rec in cols), 50_000)
    for name, what in MIXES.items():
        text = what.format(
            larger=larger,
            truncation=first["truncation"],
            filter_p=first["filter_p"],
            first=1 - first["fine_tune"],
        )
        rows.append([name, text, *(_cell(name, rec["mixes"]) for *_, rec in cols)])
    verdict = "; ".join(f"{label}: " + _best(size, rec["mixes"]) for _, label, size, rec in cols)
    sources = "; ".join(
        f"`bench/results/{name}`, {res['machine']['cpu']}, {res['machine']['cores']} cores"
        for res, name in runs
    )
    return "\n".join(
        [
            "### Adding generated images to a limited real set\n",
            _fill(INTRO.format(sources=sources, steps=first["steps"])),
            table(header, "ll" + "r" * len(cols), rows) + "\n",
            _fill(
                "Accuracy ± spread over the classifier seeds, and in brackets the points against "
                f"real alone trained as long. Of the mixes with generated images, {verdict}."
            ),
        ]
    )
