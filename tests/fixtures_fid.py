"""Fixtures for FID tests: a deterministic random-weights Inception file of torch-fidelity's layout.

This machine has no internet, so the standard weights cannot be downloaded: tests pass this file
by path through the same code path (the numbers are non-standard, and labelled so)."""

import os
import tempfile
from pathlib import Path

import pytest

from bench.inception import build_random_inception

__all__ = ["fid_cache_dir", "inception_weights", "fid_cfg", "build_random_inception"]

WEIGHTS_VERSION = 1  # bump when the recipe in bench/inception.py changes


@pytest.fixture(scope="session")
def fid_cache_dir(request) -> Path:
    """A folder kept between test sessions (pytest's cache, else the temp dir) for things that
    are slow to build and safe to share: the random weights, prepared data, the classifier."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    if cache is not None:
        return Path(cache.mkdir("gan_fid"))
    folder = Path(tempfile.gettempdir()) / f"gan-fid-test-cache-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def inception_weights(fid_cache_dir, fmnist_dir) -> Path:
    """Path of the random-weights Inception file, built once (~10 s) and kept between sessions."""
    from gan.io import file_lock

    path = fid_cache_dir / f"inception-random-v{WEIGHTS_VERSION}.pt"
    with file_lock(fid_cache_dir / "build.lock"):
        if not path.exists():
            build_random_inception(path, fmnist_dir)
    return path


@pytest.fixture
def fid_cfg(tiny, inception_weights, fid_cache_dir):
    """Factory of tiny configs that evaluate FID on 16 images with the random weights, with a
    data_dir shared between tests and sessions: the domain classifier (~20 s) and the real
    statistics are computed once. Use it for any train() that evaluates."""

    def make(**values):
        base = dict(
            fid_weights=str(inception_weights),
            fid_samples=16,
            metric="fid",
            data_dir=str(fid_cache_dir / "data"),
        )
        base.update(values)
        return tiny(**base)

    return make
