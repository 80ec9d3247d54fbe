"""Generator / discriminator pairs: baseline and modified (seed 000), DCGAN (seeds 002/004), and
a residual SNGAN/BigGAN-style pair (resnet).

Every G maps z (B, latent_dim) [+ labels] to (B, C, S, S) in [-1, 1] for any S: it grows an
s0 x s0 map by n_up doublings (s0 * 2**n_up >= S) and center-crops, like the seed's Cropping2D.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from gan.config import Config, GanError
from gan.resnet import resnet_d, resnet_g, xavier_init


def plan(image_size: int) -> tuple[int, int]:
    """(n_up, s0): the number of 2x upsamplings and the starting side for an output side."""
    n_up = max(1, int(math.floor(math.log2(image_size / 4))))
    return n_up, math.ceil(image_size / 2**n_up)


def up(c_in: int, c_out: int, mode: str) -> nn.Module:
    """A 2x upsampling stage: learned (transposed), nearest+conv, or sub-pixel (PixelShuffle)."""
    if mode == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)  # (B, c_out, 2H, 2W)
    if mode == "nearest":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1)
        )
    if mode == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(c_in, c_out * 4, 3, 1, 1), nn.PixelShuffle(2))
    raise GanError(f"config key 'upsample': unknown mode {mode!r}")


class Generator(nn.Module):
    """z -> project to (B, C0, s0, s0) -> conv body -> center crop to (B, C, S, S)."""

    def __init__(
        self,
        project: nn.Module,
        c0: int,
        s0: int,
        body: nn.Module,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        num_classes: int = 0,
        embed_dim: int = 0,
    ):
        super().__init__()
        self.latent_dim, self.channels, self.image_size = latent_dim, channels, image_size
        self.num_classes, self.c0, self.s0 = num_classes, c0, s0
        # conditional G: the body takes the labels (conditional BatchNorm), or else a learned
        # label embedding is concatenated to z
        self.labels_in_body = getattr(body, "takes_labels", False)
        use_embed = num_classes and not self.labels_in_body
        self.embed = nn.Embedding(num_classes, embed_dim) if use_embed else None
        self.project, self.body = project, body

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and y is None:
            raise ValueError("a conditional generator needs labels y")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        x = self.project(z).view(-1, self.c0, self.s0, self.s0)  # (B, C0, s0, s0)
        # (B, C, s0 * 2**n_up, ...)
        x = self.body(x, y if self.num_classes else None) if self.labels_in_body else self.body(x)
        off = (x.shape[-1] - self.image_size) // 2
        return x[..., off : off + self.image_size, off : off + self.image_size]


class Discriminator(nn.Module):
    """x [+ Gaussian noise while training] -> conv features -> one logit (+ label projection)."""

    def __init__(
        self,
        features: nn.Module,
        *,
        channels: int,
        image_size: int,
        noise: float = 0.0,
        num_classes: int = 0,
        spectral: bool = False,
    ):
        super().__init__()
        self.noise, self.num_classes = noise, num_classes
        self.features = features  # (B, C, S, S) -> (B, F)
        with torch.no_grad():
            n_feat = features(torch.zeros(2, channels, image_size, image_size)).shape[1]
        self.head = nn.Linear(n_feat, 1)
        # projection discriminator (Miyato & Koyama 2018): logit += <embed(y), features>
        self.embed = nn.Embedding(num_classes, n_feat) if num_classes else None
        if spectral:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    _sn(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.noise > 0:  # GaussianNoise layer of seed 000 (training only)
            x = x + self.noise * torch.randn_like(x)
        h = self.features(x)  # (B, F)
        logit = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional discriminator needs labels y")
            logit = logit + (self.embed(y) * h).sum(1)
        return logit


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _drop(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def _project(z_in: int, c0: int, s0: int, bn: bool, act: nn.Module) -> nn.Module:
    layers = [nn.Linear(z_in, c0 * s0 * s0, bias=not bn)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(c0 * s0 * s0)] if bn else []), act)


# -- baseline (seed 000): dense, UpSampling + 3x3 stride-1 convs with ReLU, Tanh, crop ------------


def baseline_g(width, channels, n_up, s0, upsample, z_in, **_):
    ch = [width * 2 ** (n_up - i) for i in range(n_up + 1)]  # e.g. 28px: 4w (7x7), 2w (14), w (28)
    body = []
    for i in range(n_up):
        body += [
            up(ch[i], ch[i + 1], "nearest" if upsample == "default" else upsample),
            nn.ReLU(True),
        ]
    body += [nn.Conv2d(ch[-1], channels, 3, 1, 1), nn.Tanh()]  # (B, C, s0 * 2**n_up, ...)
    return _project(z_in, ch[0], s0, False, nn.ReLU(True)), ch[0], s0, nn.Sequential(*body)


def baseline_d(width, channels, dropout, **_):
    layers, c = [], channels
    for i in range(3):  # three 3x3 stride-2 convs with ReLU: (B, w * 2**i, S / 2**(i+1), ...)
        layers += [nn.Conv2d(c, width * 2**i, 3, 2, 1), nn.ReLU(True), *_drop(dropout)]
        c = width * 2**i
    return nn.Sequential(*layers, nn.Flatten())


# -- modified (seed 000): deeper, transposed convs, BatchNorm + LeakyReLU; D deeper with noise ----


def modified_g(width, channels, n_up, s0, upsample, z_in, **_):
    ch = [width * 2 ** (n_up - i) for i in range(n_up + 1)]
    body = []
    for i in range(n_up):
        body += [
            up(ch[i], ch[i + 1], "transposed" if upsample == "default" else upsample),
            nn.BatchNorm2d(ch[i + 1]),
            _lrelu(),  # (B, ch[i+1], 2H, 2W)
            nn.Conv2d(ch[i + 1], ch[i + 1], 3, 1, 1, bias=False),
            nn.BatchNorm2d(ch[i + 1]),
            _lrelu(),  # a refining conv per stage: the "deeper" G
        ]
    body += [nn.Conv2d(ch[-1], channels, 3, 1, 1), nn.Tanh()]
    return _project(z_in, ch[0], s0, True, _lrelu()), ch[0], s0, nn.Sequential(*body)


def modified_d(width, channels, dropout, **_):
    layers = [nn.Conv2d(channels, width, 3, 1, 1), _lrelu()]  # (B, w, S, S)
    c = width
    for i in range(3):  # each stage halves the side: (B, w * 2**i, S / 2**(i+1), ...)
        layers += [
            nn.Conv2d(c, width * 2**i, 4, 2, 1),
            _lrelu(),
            nn.Conv2d(width * 2**i, width * 2**i, 3, 1, 1),
            _lrelu(),
            *_drop(dropout),
        ]
        c = width * 2**i
    return nn.Sequential(*layers, nn.Flatten())


# -- dcgan (seeds 002/004): dense + BN + LeakyReLU, transposed convs; D convs + LeakyReLU + dropout


def dcgan_g(width, channels, n_up, s0, upsample, z_in, **_):
    c0 = width * 2**n_up  # 28px, w=64: 256 channels at 7x7, as in the TensorFlow DCGAN tutorial
    mode = "transposed" if upsample == "default" else upsample
    body = [nn.ConvTranspose2d(c0, c0 // 2, 5, 1, 2, bias=False), nn.BatchNorm2d(c0 // 2), _lrelu()]
    c = c0 // 2  # (B, 2**(n_up-1) w, s0, s0)
    for _i in range(n_up - 1):
        body += [up(c, c // 2, mode), nn.BatchNorm2d(c // 2), _lrelu()]  # (B, c/2, 2H, 2W)
        c //= 2
    body += [up(c, channels, mode), nn.Tanh()]  # (B, C, s0 * 2**n_up, ...)
    return _project(z_in, c0, s0, True, _lrelu()), c0, s0, nn.Sequential(*body)


def dcgan_d(width, channels, dropout, n_down, **_):
    layers, c = [], channels
    for i in range(n_down):  # 5x5 stride-2 convs: (B, w * 2**i, S / 2**(i+1), ...)
        layers += [nn.Conv2d(c, width * 2**i, 5, 2, 2), _lrelu(), *_drop(dropout)]
        c = width * 2**i
    return nn.Sequential(*layers, nn.Flatten())


ARCHS = {
    "baseline": (baseline_g, baseline_d),
    "modified": (modified_g, modified_d),
    "dcgan": (dcgan_g, dcgan_d),
    "resnet": (resnet_g, resnet_d),
}
INITS = {"resnet": xavier_init}  # the others: init_weights (DCGAN's)


def init_weights(m: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convs and linears, N(1, 0.02) norm scales."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_models(cfg: Config, num_classes: int = 0) -> tuple[Generator, Discriminator]:
    """G and D for cfg.arch, sized by the config; num_classes > 0 with cfg.conditional."""
    if cfg.conditional and num_classes < 2:
        also = " and metric=fid (fd_domain needs labels too)" if cfg.metric == "fd_domain" else ""
        raise GanError(
            "config key 'conditional': needs a labelled dataset with at least 2 classes (one "
            f"subfolder per class); for unlabelled images set conditional=false{also}"
        )
    n_cls = num_classes if cfg.conditional else 0
    make_g, make_d = ARCHS[cfg.arch]
    # one dimension per class: an embedding as wide as z lets G take its variety from the label
    # alone and ignore z, one image per class (on Fashion-MNIST, within-class spread 0.09 of the
    # real class's against 0.53 with one dimension per class)
    # (the resnet G takes labels in its conditional BatchNorms instead: no embedding on z)
    embed_dim = 0 if cfg.arch == "resnet" else min(n_cls, cfg.latent_dim)
    n_up, s0 = plan(cfg.image_size)
    project, c0, s0, body = make_g(
        width=cfg.width,
        channels=cfg.channels,
        n_up=n_up,
        s0=s0,
        upsample=cfg.upsample,
        z_in=cfg.latent_dim + embed_dim,
        num_classes=n_cls,
    )
    G = Generator(
        project,
        c0,
        s0,
        body,
        latent_dim=cfg.latent_dim,
        channels=cfg.channels,
        image_size=cfg.image_size,
        num_classes=n_cls,
        embed_dim=embed_dim,
    )
    # D halves the side n_up times, at least twice (baseline and modified: always three times)
    features = make_d(
        width=cfg.width, channels=cfg.channels, dropout=cfg.d_dropout, n_down=max(2, n_up)
    )
    init = INITS.get(cfg.arch, init_weights)
    G.apply(init)
    features.apply(init)
    D = Discriminator(
        features,
        channels=cfg.channels,
        image_size=cfg.image_size,
        noise=cfg.d_noise,
        num_classes=n_cls,
        spectral=cfg.spectral_norm,
    )
    return G, D


def count_params(m: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in m.parameters() if p.requires_grad)
