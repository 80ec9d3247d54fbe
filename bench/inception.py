"""Inception weights where the standard file cannot be had: a deterministic random-weights file
of torch-fidelity's layout (the tests' FID fixtures and the GPU script build it too), and the
choice the FID and MFU rows make between it and the standard weights."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import torch

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


def fid_weights(data_dir: Path) -> tuple[Path, str]:
    """Inception weights for the FID and MFU rows: the standard ones when present
    ($GAN_FID_WEIGHTS or torch-fidelity's file in $TORCH_HOME), else a random-weights file of the
    same layout. Times do not depend on the weights' values; FID values from random weights are
    not standard FIDs, and the row says which it used."""
    from gan.config import make_config
    from gan.extractors import resolve_weights

    try:
        w = resolve_weights(make_config({}))
        return Path(w.path), "standard" if w.standard else f"local file {w.path}"
    except Exception as e:  # noqa: BLE001  (no file, no network)
        print(f"fid: standard Inception weights unavailable ({e}); timing with random weights")
    fmnist = Path(os.environ.get("GAN_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    path = data_dir / "cache" / "bench-random-inception.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        build_random_inception(path, fmnist)
    return path, "random, same layout (timing only; FID values non-standard)"
