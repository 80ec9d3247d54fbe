"""Shared fixtures. Fixture groups live in fixtures_*.py beside this file and are imported here."""

import os

# One intra-op thread per process: tests run training, Ray trials and subprocesses side by side on
# 2 cores, and OpenMP threads that busy-wait for a busy core made a 1 s run take 18 s here.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fixtures_fid import *  # noqa: E402, F403  (random Inception weights, FID helpers)
from fixtures_ray import *  # noqa: E402, F403  (one Ray session per test run)

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
    from gan.config import make_config

    def make(**values):
        base = dict(
            name="tiny",
            dataset="fashion_mnist",
            data_dir=str(tmp_path / "data"),
            limit=256,
            batch_size=32,
            width=8,
            latent_dim=16,
            epochs=1,
            eval_every=-1,
            sample_every=1,
            checkpoint_every=1,
            seed=0,
            device="cpu",
            arch="dcgan",
        )
        base.update(values)
        return make_config(base)

    return make
