"""The registry of bench rows: a name, the module that measures it. Each module's `run(args)`
measures its row (args: the `python -m bench` options), prints it as it goes and returns what
the run's JSON holds under the row's name."""

from bench.rows import (
    asha,
    augment,
    fid,
    frechet,
    growth,
    mfu,
    packing,
    quality,
    quick,
    screen,
    search,
    small,
    train,
)

# in the order a run measures them
ROWS = {
    "train": train,  # gan's loop against the textbook loop of the same model, img/s
    "fid": fid,  # one FID evaluation in memory against the PNG-folder flow
    "frechet": frechet,  # the Fréchet step against torch-fidelity's eigvals
    "mfu": mfu,  # FLOP/s of each hot path over the machine's measured peak
    "packing": packing,  # trials per GPU (GPU only)
    "asha": asha,  # ASHA against every trial to max_t
    "search": search,  # tuning methods against the exhaustive search
    "screen": screen,  # single trials at the quick tune's budget
    "quick": quick,  # the quick tune against the one it replaced
    "growth": growth,  # seconds per epoch at larger images and sets
    "quality": quality,  # fd_domain per epoch and second against the textbook DCGAN
    "small": small,  # limited data, 1M images seen: hours, run only when named
    "augment": augment,  # ways of mixing a small run's images into its real set: needs `small`
}
# what `python -m bench` runs unnamed: not the hours of `small`, nor `augment`, which reads them
DEFAULT = [name for name in ROWS if name not in ("small", "augment")]
