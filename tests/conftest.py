"""Shared fixtures. Fixture groups live in fixtures_*.py beside this file, loaded as plugins."""

import os

# One intra-op thread per process: tests run training, Ray trials and subprocesses side by side on
# 2 cores, and OpenMP threads that busy-wait for a busy core made a 1 s run take 18 s here.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest_plugins = [
    "fixtures_data",  # small real-data configs
    "fixtures_fid",  # random Inception weights, FID helpers
    "fixtures_ray",  # one Ray session per test run
]

FMNIST = Path(os.environ.get("GAN_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The real Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)."""
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"{FMNIST} is missing: apt-get install dataset-fashion-mnist")
    return FMNIST


@pytest.fixture
def tiny(tmp_path, fmnist_dir):
    """Factory of small, fast configs on a real Fashion-MNIST slice."""

    def make(**values):
        from fixtures_data import tiny_config  # a plugin module: imported once pytest loads it

        return tiny_config(tmp_path / "data", **values)

    return make


def pytest_collection_modifyitems(items):
    """The long tests first, then those that start Ray trials, each group in its usual order.
    Two workers take the suite in contiguous halves and steal from each other's queues, but not
    a test that has started: one long test that starts last holds the run while the other
    worker sits idle."""
    items.sort(
        key=lambda item: (
            0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("ray") else 2
        )
    )
