"""The architecture registry: every pair at every size gives images in range and finite logits."""

import pytest
import torch

from gan.config import ARCH_NAMES, GanError, make_config
from gan.models import ARCHS, build_models

SHAPES = [(28, 1), (32, 3), (100, 3)]


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize(("size", "channels"), SHAPES)
def test_shapes_range_finite(arch, size, channels):
    torch.manual_seed(0)
    cfg = make_config(dict(arch=arch, image_size=size, channels=channels, width=8, latent_dim=16))
    G, D = build_models(cfg)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
    logits = D(x)
    assert logits.shape == (4,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("upsample", ["transposed", "nearest", "pixelshuffle"])
def test_upsample_modes_and_spectral_norm(arch, upsample):
    values = dict(arch=arch, image_size=64, channels=3, width=8, latent_dim=8, upsample=upsample)
    if arch == "resnet" and upsample != "nearest":  # its blocks upsample by nearest + conv
        with pytest.raises(GanError, match="upsample"):
            build_models(make_config(values))
        return
    cfg = make_config(
        dict(
            arch=arch,
            image_size=64,
            channels=3,
            width=8,
            latent_dim=8,
            upsample=upsample,
            spectral_norm=True,
            d_noise=0.1,
            d_dropout=0.2,
        )
    )
    G, D = build_models(cfg)
    assert G(torch.randn(2, 8)).shape == (2, 3, 64, 64)
    assert any("parametrizations" in k for k in D.state_dict())
    assert D(torch.zeros(2, 3, 64, 64)).shape == (2,)


def test_conditional_needs_labels_and_uses_them():
    cfg = make_config(dict(conditional=True, width=8, latent_dim=16))
    G, D = build_models(cfg, num_classes=10)
    G.eval()
    z = torch.randn(2, 16).repeat(2, 1)
    y = torch.tensor([0, 0, 5, 5])
    x = G(z, y)
    assert not torch.allclose(x[:2], x[2:])  # same z, different class: different image
    assert D(x, y).shape == (4,)
    with pytest.raises(ValueError):
        G(z)


def test_registry_is_the_configs_arch_choices():
    # the config names the archs without importing torch; the registry must hold the same ones
    assert tuple(ARCHS) == ARCH_NAMES


def test_width_scales_parameters():
    small = build_models(make_config(dict(width=8)))[0]
    big = build_models(make_config(dict(width=16)))[0]
    assert sum(p.numel() for p in big.parameters()) > 2 * sum(p.numel() for p in small.parameters())
