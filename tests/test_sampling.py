"""gan.sampling: one convention for every image drawn from a generator."""

import torch
import torch.nn as nn

from gan.models import build_models
from gan.sampling import EVAL_SEED, batches, grid, labels_for, latents, sample


class Const(nn.Module):
    """A conditional 'generator' of one grey level that records the labels it was given."""

    latent_dim, num_classes = 4, 3

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward(self, z, y=None):
        self.seen = y
        return torch.full((len(z), 1, 8, 8), 100.6 / 127.5 - 1.0)  # 100.6 in uint8 units


def test_a_sample_is_rounded_and_draws_each_class_in_turn():
    G = Const()
    x, y = sample(G, EVAL_SEED, 0, 5)
    assert x.dtype == torch.uint8 and x.shape == (5, 1, 8, 8) and x.device.type == "cpu"
    assert (x == 101).all()  # rounded: a plain cast would give 100
    assert y.tolist() == [0, 1, 2, 0, 1] and torch.equal(G.seen, y)
    _, y = sample(G, EVAL_SEED, 4, 3)  # image i's label depends on i alone
    assert y.tolist() == [1, 2, 0]
    assert sample(G, EVAL_SEED, 0, 4, label=2)[1].tolist() == [2, 2, 2, 2]
    assert labels_for(0, 4, [7, 9]).tolist() == [7, 9, 7, 9]


def test_images_do_not_depend_on_batching_or_the_global_rng(tiny):
    G, _ = build_models(tiny(conditional=True), num_classes=10)
    G.eval()
    rng = torch.get_rng_state()
    whole, y_whole = sample(G, EVAL_SEED, 0, 10)
    parts = list(batches(G, 10, 3))
    assert [len(x) for x, _ in parts] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([x for x, _ in parts]), whole)
    assert torch.equal(torch.cat([y for _, y in parts]), y_whole)
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG is not consumed
    assert not torch.equal(sample(G, EVAL_SEED + 1, 0, 10)[0], whole)  # another seed, others
    assert torch.equal(latents(5, 2, 3, 16), latents(5, 0, 5, 16)[2:])


def test_truncation_scales_each_z_of_the_same_draw(tiny):
    from gan.sampling import render

    G, _ = build_models(tiny(conditional=True), num_classes=10)
    G.eval()
    x, y = sample(G, EVAL_SEED, 4, 6, truncation=0.5)
    assert torch.equal(x, render(G, latents(EVAL_SEED, 4, 6, G.latent_dim) * 0.5, y))
    assert torch.equal(y, sample(G, EVAL_SEED, 4, 6)[1])  # the same labels
    assert not torch.equal(x, sample(G, EVAL_SEED, 4, 6)[0])


def test_grid_tiles_on_black_and_keeps_the_channels():
    x = torch.arange(1, 6, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 4, 4).contiguous()
    g = grid(x, nrow=3, pad=2, scale=2)
    assert g.shape == (1, 2 * (8 + 2) + 2, 3 * (8 + 2) + 2) and g.dtype == torch.uint8
    assert g[0, 2, 2] == 1 and g[0, 2, 12] == 2 and g[0, 12, 2] == 4  # row-major, 3 per row
    assert g[0, 0, 0] == 0 and g[0, 12, 22] == 0  # padding and the empty cell are black


def test_grid_is_torchvision_s_make_grid_with_the_images_own_channels():
    from torchvision.utils import make_grid  # what grid replaces, so that torchvision is not loaded

    images = torch.randint(0, 256, (11, 3, 5, 7), dtype=torch.uint8)
    for n, c in [(11, 3), (11, 1), (4, 1), (1, 3), (1, 1), (8, 3)]:
        for nrow, pad, fill in [(8, 2, 0), (3, 1, 255), (5, 0, 0), (12, 4, 7)]:
            x = images[:n, :c]
            want = make_grid(x, nrow=nrow, padding=pad, pad_value=fill)[:c]
            assert torch.equal(grid(x, nrow, pad, fill=fill), want), (n, c, nrow, pad, fill)
