"""FID, KID, fd_domain and class coverage on small real Fashion-MNIST slices.

Inception runs on random weights (fixtures_fid.py): assert orderings, never absolute values."""

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
from PIL import Image

from gan import extractors, frechet, metrics
from gan.config import GanError, make_config
from gan.data import load_split, to_float
from gan.frechet import frechet_distance
from gan.io import cached
from gan.metrics import make_evaluator, reference
from gan.models import build_models
from gan.sampling import EVAL_SEED, sample


def _reference_fd(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n", [300, 20])  # full rank, and rank-deficient (N < D) like small FIDs
def test_frechet_matches_scipy_sqrtm(n):
    rng = np.random.default_rng(0)
    d = 64
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    b = np.abs(rng.standard_normal((n, d)) @ rng.standard_normal((d, d))) + 1.0
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = _reference_fd(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    root = frechet.sqrtm_psd(s1)  # the cached-root path gives the same number
    assert frechet_distance(mu1, s1, mu2, s2, root) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6 * np.trace(s1))
    # from fake features straight to cached real statistics (the n x n path when n <= d)
    real = frechet.gaussian(torch.from_numpy(a), with_sqrt=True)
    assert frechet.fd_to(real, torch.from_numpy(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_closed_form_gaussians():
    # diagonal covariances commute: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.zeros(4), np.array([1.0, -2.0, 0.0, 0.5])
    expected = 1 + 4 + 0.25 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # a rotated pair: the distance is invariant under a shared rotation
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))
    rot = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rot == pytest.approx(expected)


class Replay(nn.Module):
    """A 'generator' that returns given uint8 images, in order, as floats in [-1, 1]."""

    latent_dim, num_classes = 8, 0

    def __init__(self, images):
        super().__init__()
        self.images, self.pos = images, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z, y=None):
        out = to_float(self.images[self.pos : self.pos + len(z)])
        self.pos += len(z)
        return out


def test_fid_in_memory_self_noise_and_real(fid_cfg, inception_weights):
    cfg = fid_cfg(kid=True)  # 16 generated vs 16 real test images
    ev = make_evaluator(cfg, "cpu")
    ref = reference(cfg)
    G = Replay(ref.images).train()
    rng = torch.get_rng_state()
    same = ev.evaluate(G)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is not consumed
    assert G.training  # the mode is restored
    assert abs(same["fid"]) < 1e-2  # FID(set, itself) ~ 0 through the uint8 generator path
    other = ev.evaluate_images(load_split(cfg, "train").images[:16])  # real vs real'
    noise = torch.randint(0, 256, ref.images.shape, dtype=torch.uint8)
    far = ev.evaluate_images(noise)
    assert far["fid"] > 5 * other["fid"] > 0
    assert far["kid_mean"] > other["kid_mean"]  # KID subset size clamped to the 16 samples
    # every result names its weights, and random weights are never called standard
    assert same["fid_weights"] == extractors.file_sha(inception_weights)
    assert same["fid_standard"] is False
    assert ev.inception.weights.label.startswith("FID* (non-standard")
    assert set(same) >= {"fd_domain", "class_coverage_min", "class_entropy", "classifier_acc"}


@pytest.mark.slow
def test_fid_compile_gives_the_eager_features(fid_cfg):
    images = load_split(fid_cfg(), "train").images[:12]
    ev = make_evaluator(fid_cfg(fid_compile=True), "cpu")
    net = ev.inception.net
    assert isinstance(net, extractors.Compiled)
    compiled = extractors.extract_all(net, images, 8)  # 8, then 4 padded to 8
    assert net.run is not net.fe  # compiled: no fallback happened
    eager = extractors.extract_all(net.fe, images, 8)
    assert compiled.shape == eager.shape == (12, 2048)
    assert (compiled - eager).abs().max() <= 1e-4 * eager.abs().max()


@pytest.mark.parametrize("when", ["at the first call", "at torch.compile"])
def test_fid_compile_falls_back_to_eager_when_compiling_fails(fid_cfg, monkeypatch, caplog, when):
    def broken(*a, **k):
        raise RuntimeError("InductorError: no C++ compiler")

    class Broken(nn.Module):  # what torch.compile returns: a module, failing at its first call
        forward = broken

    compile_ = broken if when == "at torch.compile" else (lambda fe, **k: Broken())
    monkeypatch.setattr(extractors.torch, "compile", compile_)
    images = load_split(fid_cfg(), "train").images[:16]
    eager = make_evaluator(fid_cfg(), "cpu").evaluate_images(images)
    ev = make_evaluator(fid_cfg(fid_compile=True), "cpu")
    with caplog.at_level("WARNING", logger="gan.extractors"):
        result = ev.evaluate_images(images)
    assert "fid_compile: torch.compile failed (InductorError: no C++ compiler)" in caplog.text
    assert ev.inception.net.run is ev.inception.net.fe
    assert result["fid"] == eager["fid"]


def _folder(tmp_path, fmnist_images, n=24):
    """An unlabelled image folder (no class subfolders): no classifier, Inception only."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(fmnist_images[:n]):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_real_statistics_are_cached_per_weights(tmp_path, tiny, inception_weights, monkeypatch):
    fmnist = load_split(tiny(), "test").images
    folder = _folder(tmp_path, fmnist)
    cfg = tiny(dataset="folder", data_path=str(folder), fid_weights=str(inception_weights))
    cfg = make_config(dict(fid_samples=8, fid_ref_split="train", metric="fid"), base=cfg)
    calls = []
    real_extract = metrics.extract_all
    monkeypatch.setattr(metrics, "extract_all", lambda *a: calls.append(1) or real_extract(*a))
    first = make_evaluator(cfg, "cpu")
    assert len(calls) == 1 and first.domain is None  # unlabelled: no domain classifier
    second = make_evaluator(cfg, "cpu")
    assert len(calls) == 1  # cache hit: the real images are not run through Inception again
    np.testing.assert_array_equal(first.inception.real["sigma"], second.inception.real["sigma"])
    assert len(list((tmp_path / "data" / "cache").glob("fid_*.pt"))) == 1
    # other weights (same layout, other bytes) must not reuse those statistics
    state = torch.load(inception_weights, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    torch.save(state, tmp_path / "other.pt")
    make_evaluator(make_config({"fid_weights": str(tmp_path / "other.pt")}, base=cfg))
    assert len(calls) == 2
    assert len(list((tmp_path / "data" / "cache").glob("fid_*.pt"))) == 2
    result = second.evaluate_images(fmnist[100:108])
    assert result["diversity_space"] == "inception" and "fd_domain" not in result


def test_missing_weights_fail_before_training(tiny, tmp_path, monkeypatch):
    from gan.train import train

    cfg = tiny(eval_every=0, fid_weights=str(tmp_path / "nope.pt"))
    with pytest.raises(GanError, match="GAN_FID_WEIGHTS") as e:
        train(cfg, tmp_path / "run")
    assert "nope.pt" in str(e.value) and "metric=fd_domain" in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
    monkeypatch.setenv("GAN_FID_WEIGHTS", str(tmp_path / "env.pt"))
    with pytest.raises(GanError, match=r"env\.pt .*from \$GAN_FID_WEIGHTS"):
        make_evaluator(tiny(), "cpu")
    # no local file and no network: the standard download fails with the same ways out
    monkeypatch.delenv("GAN_FID_WEIGHTS")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*a, **k):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GanError, match="cannot download the standard FID Inception weights"):
        make_evaluator(tiny(), "cpu")
    (tmp_path / "bad.pt").write_bytes(b"not weights")
    with pytest.raises(GanError, match=r"FID weights file .*bad\.pt is not a plain weights file"):
        make_evaluator(tiny(fid_weights=str(tmp_path / "bad.pt")), "cpu")


def test_prc_without_vgg_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached

    def offline(*a, **k):  # no network
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GanError, match="precision/recall .*VGG16.*drop prc"):
        extractors.vgg(torch.device("cpu"))


def test_fd_domain_ranks_noise_early_generator_real(fid_cfg, tmp_path):
    from gan.checkpoint import load_generator
    from gan.train import train

    # an early generator: ~300 steps on a 1024-image slice, blurry shapes (~3 s on 2 cores)
    cfg = fid_cfg(metric="fd_domain", fid_samples=200, limit=1024, epochs=10)
    train(cfg, tmp_path / "run")
    G = load_generator(tmp_path / "run")[0]
    rng = torch.get_rng_state()
    ev = make_evaluator(cfg, "cpu")  # the classifier is cached in fid_cfg's shared data_dir
    assert torch.equal(rng, torch.get_rng_state())
    assert ev.inception is None  # fd_domain alone needs no Inception weights
    assert ev.domain.info["test_acc"] > 0.7  # trained on the same 1024 images
    early = ev.evaluate(G)
    noise = ev.evaluate_images(torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8))
    real = ev.evaluate_images(load_split(cfg, "train").images[-200:])  # not the reference set
    assert noise["fd_domain"] > early["fd_domain"] > real["fd_domain"]
    # class coverage: real data covers every class evenly, a young generator does not
    assert real["class_entropy"] > 0.95 and real["class_coverage_min"] > 0.03
    assert early["class_entropy"] < real["class_entropy"]
    assert 0.9 < real["diversity"] < 1.1


def _slow_cached(data_dir, marker, out):
    """One "trial" asking for cached statistics whose computation takes a second."""

    def compute():
        with open(marker, "a") as f:
            f.write("x")
        time.sleep(1.0)
        return {"value": torch.arange(5)}

    out.put(int(cached(Path(data_dir) / "cache", "t", "k", compute)["value"].sum()))


def test_cache_is_computed_once_by_concurrent_processes(tmp_path):
    # two trials ask for the same statistics at once: one computes, the other waits and reads.
    # fork, not spawn: a fresh interpreter spends ~10 s importing torchvision
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    args = (str(tmp_path), str(tmp_path / "computed"), out)
    procs = [ctx.Process(target=_slow_cached, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():  # never leave a stuck child behind
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0] and [out.get(), out.get()] == [10, 10]
    assert (tmp_path / "computed").read_text() == "x"
    assert not list((tmp_path / "cache").glob(".*tmp*"))  # no temp file left behind


def test_the_evaluator_scores_the_images_gan_sampling_draws(fid_cfg):
    """`gan evaluate`'s grid and D accuracy use sample(G, EVAL_SEED, 0, n): the same images."""
    cfg = fid_cfg(conditional=True)
    ev = make_evaluator(cfg, "cpu")
    G, _ = build_models(cfg, num_classes=10)
    G.eval()
    images, labels = sample(G, EVAL_SEED, 0, cfg.fid_samples)
    assert labels.tolist() == [i % 10 for i in range(cfg.fid_samples)]
    assert ev.evaluate(G)["fid"] == ev.evaluate_images(images)["fid"]
