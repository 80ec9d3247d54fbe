"""Small real-data configs: the values every training test starts from, and a shared data dir."""

from pathlib import Path

import pytest

__all__ = ["TINY", "tiny_config", "shared_data_dir"]

# a narrow DCGAN on 256 real Fashion-MNIST images, on the CPU: an epoch takes well under a second
TINY = dict(
    name="tiny",
    dataset="fashion_mnist",
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


def tiny_config(data_dir, /, **values):
    """A Config of TINY's values in `data_dir`, with `values` (data_dir too) on top."""
    from gan.config import make_config

    return make_config({**TINY, "data_dir": str(data_dir), **values})


@pytest.fixture(scope="session")
def shared_data_dir(request) -> Path:
    """Prepared data and the domain classifier, cached across modules and runs (file-locked)."""
    return Path(request.config.cache.mkdir("gan_generate_data"))
