"""The techniques of the strongest recipes: DiffAugment, R1, the EMA warm-up, the resnet pair."""

import copy

import pytest
import torch
import torch.nn.functional as F

from gan.config import GanError, make_config
from gan.diffaug import POLICIES, diff_augment, parse_policy
from gan.losses import r1_penalty
from gan.models import ARCHS, build_models
from gan.resnet import conv_pool, set_fused, up_conv
from gan.steps import ema_beta, ema_update
from gan.train import train

# -- every architecture: shapes, range, and a gradient for every parameter (as timm tests) ------


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("spectral_norm", [False, True])
@pytest.mark.parametrize("size", [28, 32, 64, 100])
def test_every_parameter_gets_a_gradient(arch, conditional, spectral_norm, size):
    torch.manual_seed(0)
    cfg = make_config(
        dict(
            arch=arch,
            image_size=size,
            width=4,
            latent_dim=8,
            conditional=conditional,
            spectral_norm=spectral_norm,
            channels=3 if size == 32 else 1,
        )
    )
    G, D = build_models(cfg, num_classes=3)
    y = torch.tensor([0, 1, 2, 1]) if conditional else None
    x = G(torch.randn(4, 8), y)
    assert x.shape == (4, cfg.channels, size, size)
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    logits = D(x, y)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    for net, name in ((G, "G"), (D, "D")):
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{arch} {name}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{arch} {name}.{pname}"
            assert p.grad.abs().sum() > 0, f"{arch} {name}.{pname} has an all-zero gradient"


def test_resnet_conditional_batchnorm_uses_the_label():
    torch.manual_seed(0)
    cfg = make_config(dict(arch="resnet", width=8, latent_dim=16, conditional=True))
    G, _ = build_models(cfg, num_classes=4)
    with torch.no_grad():  # give each class its own scale and shift, as training would
        for m in G.modules():
            if hasattr(m, "gain") and hasattr(m, "bias") and hasattr(m, "bn"):
                m.gain.weight.normal_(1.0, 0.5)
                m.bias.weight.normal_(0.0, 0.5)
    G.eval()
    assert G.embed is None  # labels go to the BatchNorms, not onto z
    z = torch.randn(2, 16).repeat(2, 1)
    x = G(z, torch.tensor([0, 0, 3, 3]))
    assert not torch.allclose(x[:2], x[2:])
    with pytest.raises(ValueError):
        G(z)


@pytest.mark.parametrize("h, w", [(7, 7), (6, 9), (1, 2)])
def test_fused_upsample_and_pool_convs_equal_the_plain_ones(h, w):
    """up_conv and conv_pool compute the plain formulas (interpolate then conv, conv then pool),
    odd sides included, with the same gradients for the input, weight and bias."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, h, w)
    conv = torch.nn.Conv2d(5, 4, 3, 1, 1)
    plain = {
        up_conv: lambda x: conv(F.interpolate(x, scale_factor=2.0, mode="nearest")),
        conv_pool: lambda x: F.avg_pool2d(conv(x), 2),
    }
    for fused, formula in plain.items():
        if min(h, w) < 2 and fused is conv_pool:
            continue  # a pool needs two pixels a side
        outs = []
        for fn in (fused, formula):
            xi = x.clone().requires_grad_(True)
            y = fn(xi, conv) if fn is fused else fn(xi)
            conv.zero_grad()
            y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
            outs.append([y.detach(), xi.grad, conv.weight.grad.clone(), conv.bias.grad.clone()])
        assert outs[0][0].shape == outs[1][0].shape
        for got, want in zip(*outs, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [28, 36])
def test_resnet_pair_equals_its_plain_formulation(size):
    """The fused residual blocks are the same G and D as SNGAN's code writes them (the plain
    blocks the benchmark's textbook loop runs): outputs and every parameter's gradient agree,
    spectral norm's power iteration and conditional BatchNorm included (36 px: G starts at 9x9)."""
    torch.manual_seed(0)
    cfg = make_config(
        dict(
            arch="resnet",
            image_size=size,
            width=8,
            latent_dim=16,
            conditional=True,
            spectral_norm=True,
        )
    )
    # in float64: the two formulations are the same function, but in float32 BatchNorm's
    # backward over 6 images amplifies kernel rounding, which differs between CPUs, to ~0.4% of a
    # gradient (an AMD EPYC host, one thread); float64 leaves ~1e-14
    nets = [m.double() for m in build_models(cfg, num_classes=3)]
    z, y = torch.randn(6, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    runs = []
    for plain in (False, True):
        # the same weights and power-iteration state, run fused or plain (fused=False)
        G, D = (set_fused(copy.deepcopy(m), not plain) for m in nets)
        x = G(z, y)
        logits = D(x, y)
        logits.square().mean().backward()
        grads = [p.grad for net in (G, D) for p in net.parameters()]
        runs.append([x.detach(), logits.detach(), *grads])
    for got, want in zip(*runs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_resnet_refuses_other_upsampling():
    with pytest.raises(GanError, match="upsample"):
        build_models(make_config(dict(arch="resnet", upsample="pixelshuffle")))


# -- DiffAugment ------------------------------------------------------------------------------


def test_diffaug_keeps_shape_passes_gradients_and_repeats_with_the_seed():
    policy = POLICIES
    x = torch.rand(8, 3, 28, 28, requires_grad=True)
    torch.manual_seed(1)
    a = diff_augment(x, policy)
    assert a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(1)
    b = diff_augment(x, policy)
    assert torch.equal(a, b)
    torch.manual_seed(2)
    assert not torch.equal(a, diff_augment(x, policy))


def test_translation_shifts_and_fills_with_zeros():
    from gan.diffaug import translation

    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    out = translation(x)
    shifted = (out == 0).flatten(1).any(1)
    assert shifted.float().mean() > 0.5  # most samples moved (shift 0 in both axes is rare)
    assert set(out.unique().tolist()) <= {0.0, 1.0}  # moved, not blurred
    # each row of a shifted image is the original's row moved whole, never mixed
    img = torch.arange(16.0).view(1, 1, 1, 16).expand(4, 1, 16, 16) + 1
    moved = translation(img)
    nz = moved[moved > 0]
    assert set(nz.unique().tolist()) <= set(range(1, 17))


def test_cutout_zeroes_a_square_of_half_the_side():
    from gan.diffaug import cutout

    torch.manual_seed(0)
    out = cutout(torch.ones(256, 1, 28, 28))
    zeros = (out == 0).flatten(1).sum(1).float()
    assert zeros.max() == 14 * 14  # a whole square fits somewhere
    assert zeros.min() > 0  # every sample loses part of itself
    assert zeros.mean() > 100


def test_diffaug_color_changes_brightness_and_contrast():
    from gan.diffaug import color

    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    out = color(x)
    assert not torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)))


def test_diffaug_policy_is_checked_in_the_config():
    assert parse_policy("color, translation") == ("color", "translation")
    assert parse_policy("") == ()
    with pytest.raises(GanError, match="diffaug"):
        make_config({"diffaug": "colour"})
    with pytest.raises(GanError, match="diffaug"):
        make_config({"diffaug": "color,color"})
    assert make_config({"diffaug": "color,translation,cutout"}).diffaug


# -- R1 ---------------------------------------------------------------------------------------


def test_r1_is_positive_for_a_real_d_and_zero_at_gamma_zero(tmp_path, tiny):
    torch.manual_seed(0)
    _, D = build_models(make_config(dict(width=8, latent_dim=8)))
    real = (torch.rand(8, 1, 28, 28) * 2 - 1).requires_grad_(True)
    penalty = r1_penalty(D(real), real)
    assert penalty > 0
    penalty.backward()  # differentiable in D's weights (create_graph)
    # every weight (a bias shifts D(x) but not its slope in x, so it gets none)
    assert all(p.grad is not None for n, p in D.named_parameters() if n.endswith("weight"))
    # a D that ignores its input has no gradient to penalise
    flat = torch.nn.Linear(1, 1)
    x = torch.rand(4, 1, requires_grad=True)
    assert r1_penalty(flat(torch.zeros(4, 1)).squeeze(1) + 0 * x.sum(), x) == 0
    # in the loop: gamma 0 is exactly the run without R1; gamma > 0 changes the run
    base = train(tiny(epochs=1), tmp_path / "a")
    off = train(tiny(epochs=1, r1_gamma=0.0, r1_every=1), tmp_path / "b")
    on = train(tiny(epochs=1, r1_gamma=10.0, r1_every=1), tmp_path / "c")
    from gan.checkpoint import latest_good

    g = {k: latest_good(tmp_path / k)[1]["G"] for k in "abc"}
    assert all(torch.equal(g["a"][k], g["b"][k]) for k in g["a"])
    assert not all(torch.equal(g["a"][k], g["c"][k]) for k in g["a"])
    assert base["status"] == off["status"] == on["status"] == "completed"


# -- EMA warm-up ------------------------------------------------------------------------------


def test_warmed_up_ema_tracks_g_in_the_first_steps():
    cfg = make_config(dict(ema_decay=0.999, ema_rampup=0.05, batch_size=64))
    betas = [ema_beta(cfg, s) for s in (1, 10, 100, 10_000, 1_000_000)]
    assert betas[0] < 1e-3  # after one step G_ema is (almost) G
    assert betas == sorted(betas)  # the average lengthens as training goes on
    assert betas[-1] == pytest.approx(0.999)  # and ends at ema_decay
    old = make_config(dict(ema_decay=0.999))  # rampup 0: the fixed ramp of older runs
    assert ema_beta(old, 1) == pytest.approx(2 / 11)

    torch.manual_seed(0)
    G, _ = build_models(make_config(dict(width=8, latent_dim=8)))
    G_ema = __import__("copy").deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))  # G moves a long way in its first step
    ema_update(G_ema, G, ema_beta(cfg, 1))
    for a, b in zip(G_ema.parameters(), G.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-3 * (1 + b.abs().max().item()))


# -- a short resnet run: trains, resumes exactly, evaluates -----------------------------------


def test_resnet_run_trains_resumes_exactly_and_evaluates(tmp_path, tiny):
    from gan.checkpoint import latest_good

    values = dict(
        arch="resnet",
        spectral_norm=True,
        loss="hinge",
        beta1=0.0,
        beta2=0.9,
        diffaug="color,translation,cutout",
        r1_gamma=1.0,
        r1_every=4,
        ema_rampup=0.05,
        eval_every=1,
        metric="fd_domain",
        fid_samples=64,
    )
    whole = train(tiny(epochs=2, **values), tmp_path / "whole")
    train(tiny(epochs=1, **values), tmp_path / "split")
    resumed = train(tiny(epochs=2, **values), tmp_path / "split")
    assert whole["status"] == resumed["status"] == "completed" and resumed["epoch"] == 2
    a, b = latest_good(tmp_path / "whole")[1], latest_good(tmp_path / "split")[1]
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert 0 < whole["best_metric"] < float("inf")


# -- adaptive augmentation (ADA's r_t heuristic) and LeCam ---------------------------------------


class ConstD(torch.nn.Module):
    """A D whose logit is `value` for every image (plus a weight, so it has a gradient)."""

    def __init__(self, value: float):
        super().__init__()
        self.value, self.w = value, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, y=None):
        return self.value + self.w * x.flatten(1).mean(1)


def _ada_epoch(tiny, value: float, p0: float) -> float:
    from gan.steps import ADA_IMAGES, ADA_INTERVAL, DState, Nets, train_epoch

    cfg = tiny(diffaug="translation", ada_target=0.6, batch_size=32)
    torch.manual_seed(0)
    G, _ = build_models(cfg)
    D = ConstD(value)
    state = DState(ada_p=p0)
    nets = Nets(G, D, torch.optim.Adam(G.parameters()), torch.optim.SGD(D.parameters(), 0.0))
    nets.d_state = state
    real = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
    stats = train_epoch(nets, real, None, cfg).stats
    assert stats["ada_p"] == state.ada_p
    return (state.ada_p - p0) / (32 * ADA_INTERVAL / ADA_IMAGES)  # adjustments made


def test_ada_raises_p_while_d_calls_real_images_real_and_lowers_it_after(tiny):
    # 256 images in batches of 32: 8 D steps, an adjustment every 4
    assert _ada_epoch(tiny, +1.0, 0.0) == pytest.approx(2, abs=1e-3)  # E[sign D(x)] = 1 > 0.6: up
    assert _ada_epoch(tiny, -1.0, 0.5) == pytest.approx(-2, abs=1e-3)  # -1 < 0.6: down
    assert _ada_epoch(tiny, -1.0, 0.0) == 0  # never below 0
    assert _ada_epoch(tiny, +1.0, 1.0) == 0  # nor above 1
    with pytest.raises(GanError, match="'ada_target'.*diffaug is off"):
        make_config({"ada_target": 0.6})


def test_diffaug_with_probability_reaches_that_share_of_images():
    x = torch.rand(4000, 1, 8, 8) * 2 - 1
    torch.manual_seed(0)
    assert torch.equal(diff_augment(x, ("cutout",), torch.tensor(0.0)), x)
    changed = (diff_augment(x, ("cutout",), torch.tensor(0.25)) != x).flatten(1).any(1)
    assert changed.float().mean() == pytest.approx(0.25, abs=0.03)
    assert (diff_augment(x, ("cutout",), torch.tensor(1.0)) != x).flatten(1).any(1).all()


def test_lecam_penalty_holds_d_outputs_to_the_other_sides_anchor():
    from gan.losses import lecam_penalty

    d_real, d_fake = torch.tensor([2.0, 0.0]), torch.tensor([-3.0, 1.0])
    # real above the fake anchor (-1): (3^2 + 1^2) / 2; fake below the real anchor (1): 4^2 / 2
    value = lecam_penalty(d_real, d_fake, torch.tensor(1.0), torch.tensor(-1.0))
    assert value == pytest.approx((9 + 1) / 2 + 16 / 2)
    assert lecam_penalty(d_real, d_fake, torch.tensor(-5.0), torch.tensor(5.0)) == 0


def test_ada_and_lecam_runs_resume_exactly_and_keep_their_state(tmp_path, tiny):
    from gan.checkpoint import latest_good

    values = dict(diffaug="translation,cutout", ada_target=0.6, lecam=0.3, loss="hinge")
    train(tiny(epochs=2, **values), tmp_path / "whole")
    train(tiny(epochs=1, **values), tmp_path / "split")
    train(tiny(epochs=2, **values), tmp_path / "split")
    a, b = latest_good(tmp_path / "whole")[1], latest_good(tmp_path / "split")[1]
    for part in ("G", "D", "G_ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["d_state"] == b["d_state"]
    assert a["d_state"]["ada_p"] > 0  # a D on 256 images soon calls them all real
    assert a["d_state"]["lecam_real"] != 0 and a["d_state"]["lecam_fake"] != 0
