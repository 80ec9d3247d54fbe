"""The feature extractors of FID and precision/recall: torch-fidelity's Inception and VGG16,
built from weights files read weights-only (keys and shapes checked), and the Weights record that
says which file a FID came from and whether it is the standard one."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from gan.config import Config, GanError

log = logging.getLogger(__name__)

INCEPTION, INCEPTION_LAYER = "inception-v3-compat", "2048"  # the standard FID features
VGG, VGG_LAYER = "vgg16", "fc2_relu"  # torch-fidelity's precision/recall features
WAYS_OUT = (
    "ways out: run once with internet access (the file is cached in $TORCH_HOME), "
    "or copy it from {url} to a local file and set GAN_FID_WEIGHTS=/path/to/it "
    "(or --set fid_weights=/path/to/it), or use the offline in-domain metric "
    "(--set metric=fd_domain, labelled datasets)"
)


# torch-fidelity is imported where its extractors or arithmetic run, not with this module: its
# package imports torchvision, which a run scored by fd_domain (every Ray trial worker of the
# offline configs) does not need
def inception_url() -> str:
    """Where torch-fidelity publishes the standard Inception weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def standard_sha() -> str:
    """The standard weights' fingerprint (torch.hub names its files <name>-<sha256 prefix>.pth)."""
    return re.search(r"-([0-9a-f]{8})\.pth$", inception_url()).group(1)


def ways_out() -> str:
    """What to do when the FID weights are missing or unreadable."""
    return WAYS_OUT.format(url=inception_url())


@dataclass(frozen=True)
class Weights:
    """The Inception weights a FID was computed with; only the published ones are standard."""

    path: str  # the Inception weights file torch-fidelity loads
    sha: str  # its sha256 prefix, recorded with every result
    standard: bool  # True only for torch-fidelity's published weights

    @property
    def label(self) -> str:
        return "FID" if self.standard else f"FID* (non-standard weights {self.sha})"


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_sha(path: str | Path) -> str:
    """sha256 prefix (8 hex) of a file, memoized while the file is unchanged."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)[:8]


def resolve_weights(cfg: Config) -> Weights:
    """The Inception weights: fid_weights, else $GAN_FID_WEIGHTS, else the standard download."""
    url = inception_url()
    local = cfg.fid_weights or os.environ.get("GAN_FID_WEIGHTS", "")
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            origin = "config key fid_weights" if cfg.fid_weights else "$GAN_FID_WEIGHTS"
            raise GanError(
                f"FID weights file {path} (from {origin}) does not exist; "
                + WAYS_OUT.format(url=url)
            )
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading the standard Inception weights to %s", path)
            try:
                torch.hub.download_url_to_file(url, str(path), hash_prefix=standard_sha())
            except Exception as e:  # noqa: BLE001  (DNS, proxy, HTTP and hash errors all differ)
                raise GanError(
                    f"cannot download the standard FID Inception weights to {path} "
                    f"({type(e).__name__}: {e}); " + WAYS_OUT.format(url=url)
                ) from None
    sha = file_sha(path)
    return Weights(str(path), sha, sha == standard_sha())


def load_weights(path: str | Path, what: str, fix: str) -> dict:
    """A weights file as a state dict, read with weights_only=True: torch-fidelity and torchvision
    would unpickle it in full (weights_only=False), and a crafted file then runs code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (foreign pickles, truncation, non-torch files differ)
        raise GanError(
            f"{what} file {path} is not a plain weights file ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); {fix}"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise GanError(f"{what} file {path} is not a state dict of tensors; {fix}")
    return state


def check_state(module: nn.Module, state: dict, path: str | Path, what: str, fix: str) -> None:
    """GanError naming the first missing, unexpected or mis-shaped key of `state`."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    # BatchNorm fills a missing num_batches_tracked itself (files saved before torch 0.4.1)
    missing = sorted(k for k in set(want) - set(got) if not k.endswith("num_batches_tracked"))
    extra = sorted(set(got) - set(want))
    shape = [k for k in want if k in got and want[k] != got[k]]
    if missing or extra or shape:
        problem = (
            f"missing key {missing[0]!r}"
            if missing
            else f"unexpected key {extra[0]!r}"
            if extra
            else f"key {shape[0]!r} has shape {list(got[shape[0]])}, not {list(want[shape[0]])}"
        )
        raise GanError(f"{what} file {path} has the wrong layout ({problem}); {fix}")


# torch-fidelity's constructors load their weights themselves, with a full unpickler; the names
# they load through are swapped for the checked state dict while they run (one at a time)
_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _loader(module, name: str, value) -> Iterator[None]:
    with _BUILD_LOCK:
        saved = getattr(module, name)
        setattr(module, name, lambda *a, **k: value)
        try:
            yield
        finally:
            setattr(module, name, saved)


def inception(weights: Weights, device: torch.device, compiled: bool = False) -> nn.Module:
    """torch-fidelity's Inception feature extractor with these weights, on `device`; with
    `compiled`, run through torch.compile with its weights frozen (Compiled)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe_inception
    import torchvision

    what, fix = "FID weights", ways_out()
    state = load_weights(weights.path, what, fix)
    # torchvision's inception_v3 has torch-fidelity's 566 keys and shapes; on the meta device
    # it costs no memory and no initialisation
    with torch.device("meta"):
        layout = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )
    check_state(layout, state, weights.path, what, fix)
    try:
        with _loader(fe_inception, "load_state_dict_from_url", state):
            fe = fe_inception.FeatureExtractorInceptionV3(
                INCEPTION, [INCEPTION_LAYER], verbose=False
            )
    except RuntimeError as e:  # load_state_dict's own strict check, should the layouts differ
        raise GanError(
            f"{what} file {weights.path} does not fit torch-fidelity's Inception "
            f"({str(e)[:200]}); {fix}"
        ) from None
    # built on the CPU, then .to(device); channels_last: oneDNN/cuDNN's fast convolution layout,
    # ~2x faster on this 2-core CPU with features equal to ~1e-6 relative (the bench checks FID
    # against torch-fidelity's own call)
    fe = fe.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
    return Compiled(fe) if compiled else fe


class Compiled(nn.Module):
    """An extractor run through torch.compile with its weights frozen as constants (Inductor's
    `freezing`: BatchNorm folded into the convolutions). Every batch runs at the size of the
    first, the last one padded with copies of its last image (whose features are dropped), so the
    model compiles once. Should compiling fail (no C++ compiler, an unsupported backend), it warns
    once and runs eager."""

    def __init__(self, fe: nn.Module):
        super().__init__()
        self.fe, self.run, self.batch = fe, fe, 0
        try:  # lazy: most failures surface at the first call, in forward
            self.run = torch.compile(fe, options={"freezing": True})
        except Exception as e:  # noqa: BLE001  (compiler and backend failures vary by platform)
            self._eager(e)

    def _eager(self, e: Exception) -> None:
        log.warning("fid_compile: torch.compile failed (%s); running eager", str(e)[:200])
        self.run = self.fe

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        self.batch = self.batch or b
        if b > self.batch:
            parts = [self(x[i : i + self.batch]) for i in range(0, b, self.batch)]
            return [torch.cat(f) for f in zip(*parts, strict=True)]
        if b < self.batch:
            x = torch.cat([x, x[-1:].expand(self.batch - b, *x.shape[1:])])
        if self.run is not self.fe:
            try:
                return [f[:b] for f in self.run(x)]
            except Exception as e:  # noqa: BLE001
                self._eager(e)
        return [f[:b] for f in self.fe(x)]


VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1


def vgg(device: torch.device) -> nn.Module:
    """torch-fidelity's VGG16 extractor for precision/recall (torchvision ImageNet weights)."""
    import torch_fidelity.feature_extractor_vgg16 as fe_vgg
    import torchvision

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG_URL).name
    fix = (
        f"run once with internet access (they are cached in {path.parent}), or copy them from "
        f"{VGG_URL} to {path}, or drop prc/--prc"
    )
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            sha = re.search(r"-([0-9a-f]{8})\.pth$", VGG_URL).group(1)
            torch.hub.download_url_to_file(VGG_URL, str(path), hash_prefix=sha)
        except Exception as e:  # noqa: BLE001  (offline: URLError; proxies and hashes differ)
            raise GanError(
                f"precision/recall (prc) needs torchvision's VGG16 ImageNet weights, which could "
                f"not be downloaded ({type(e).__name__}: {str(e)[:200]}); {fix}"
            ) from None
    what = "precision/recall (prc) VGG16 weights"
    # the cached file is read weights-only too: torchvision would unpickle it in full
    state = load_weights(path, what, fix)
    with torch.device("meta"):  # no memory, no initialisation: assign= puts the weights in
        model = torchvision.models.vgg16(weights=None, init_weights=False)
    check_state(model, state, path, what, fix)
    model.load_state_dict(state, assign=True)
    with _loader(fe_vgg, "torchvision_load_pretrained_vgg16", model):
        fe = fe_vgg.FeatureExtractorVGG16(VGG, [VGG_LAYER], verbose=False)
    return fe.to(device)


# -- images in, features out ------------------------------------------------------------------


def extract(fe: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Features (B, D) float32 on the CPU of a uint8 batch, 1 or 3 channels."""
    device = next(fe.parameters()).device
    x = batch.to(device)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    with torch.no_grad():
        return fe(x)[0].float().cpu()


def extract_all(fe: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Features of a uint8 image tensor (N, C, H, W), in batches."""
    return torch.cat(
        [extract(fe, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )
