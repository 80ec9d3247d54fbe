"""Fixtures for FID tests: a deterministic random-weights Inception file of torch-fidelity's layout.

This machine has no internet, so the standard weights cannot be downloaded: tests pass this file
by path through the same code path (the numbers are non-standard, and labelled so)."""

import gzip
import os
import tempfile
from pathlib import Path

import pytest
import torch

__all__ = ["fid_cache_dir", "inception_weights", "fid_cfg", "build_random_inception"]

WEIGHTS_VERSION = 1  # bump when the recipe below changes
SEED = 0


def _fmnist_batch(fmnist_dir: Path, n: int) -> torch.Tensor:
    """The first n Fashion-MNIST test images as uint8 (n, 3, 28, 28), read from the IDX file."""
    with gzip.open(fmnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + n * 784)[16:]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(n, 1, 28, 28).repeat(1, 3, 1, 1)


def build_random_inception(path: Path, fmnist_dir: Path) -> Path:
    """Write random Inception weights that torch-fidelity loads and that give usable features."""
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # torchvision's inception_v3 has the same 566 keys and shapes as torch-fidelity's
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    gen = torch.Generator().manual_seed(SEED)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            # plain random init makes features explode or vanish through 94 layers
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    fe = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(tmp)
    )
    # one BatchNorm-statistics pass on a fixed batch of real images (momentum None: plain mean)
    for m in fe.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        fe(_fmnist_batch(fmnist_dir, 16))
    state = {k: v for k, v in fe.state_dict().items() if not k.endswith("num_batches_tracked")}
    state.update({k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")})
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: concurrent test sessions never read half a file
    return path


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
