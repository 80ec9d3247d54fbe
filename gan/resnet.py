"""The layers of the residual SNGAN/BigGAN-style pair (arch resnet): G's upsampling blocks with
(conditional) BatchNorm, D's downsampling blocks, sum pooling, and SNGAN's initialisation. The
builders that size them for an image are gan.models.resnet_g / resnet_d."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gan.config import GanError


class CondBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift come from the class label (BigGAN's conditional BN)."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.gain, self.bias = nn.Embedding(num_classes, c), nn.Embedding(num_classes, c)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


def _box(w: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel (..., 3, 3) convolved with a 2x2 box of ones: (..., 4, 4)."""
    p = F.pad(w, (1, 1, 1, 1))
    return p[..., :-1, :-1] + p[..., 1:, :-1] + p[..., :-1, 1:] + p[..., 1:, 1:]


def up_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(nearest 2x upsampling of x) for a 3x3, padding-1 conv, computed as one stride-2
    transposed convolution of x by the conv's kernel summed over the 2x2 box each input pixel
    becomes: the same function and gradients (to float rounding), 16 instead of 36
    multiply-adds per input pixel and channel pair, and no upsampled copy of x."""
    w = conv.weight  # read once: under spectral norm each read is a power iteration
    return F.conv_transpose2d(x, _box(w).flip(2, 3).transpose(0, 1), conv.bias, 2, 1)


def conv_pool(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """2x2 average pooling of conv(x) for a 3x3, padding-1 conv, computed as one stride-2 4x4
    convolution by the kernel's 2x2 box sum over 4: the same function and gradients (to float
    rounding, floored odd sides included), 16 instead of 36 multiply-adds per output pixel."""
    w = conv.weight
    return F.conv2d(x, _box(w) / 4, conv.bias, 2, 1)


class GBlock(nn.Module):
    """BN-ReLU-up-conv3-BN-ReLU-conv3 plus an up-conv1 shortcut: (B, c_in, H, W) -> (B, c_out, 2H,
    2W); its BatchNorms are conditional when num_classes > 0. The upsampling and its conv run
    as one transposed conv (up_conv), and the shortcut convolves before it upsamples (a 1x1
    conv commutes with nearest upsampling): the same function, a quarter of the shortcut's
    multiply-adds. fused=False runs the plain formulation instead (upsample, then each conv), the
    reference the fused one is tested and benchmarked against; the parameters are the same."""

    def __init__(self, c_in: int, c_out: int, num_classes: int = 0, fused: bool = True):
        super().__init__()
        self.cond, self.fused = num_classes > 0, fused
        self.bn1 = CondBatchNorm2d(c_in, num_classes) if self.cond else nn.BatchNorm2d(c_in)
        self.bn2 = CondBatchNorm2d(c_out, num_classes) if self.cond else nn.BatchNorm2d(c_out)
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(x, y) if self.cond else self.bn1(x))
        if self.fused:
            h = up_conv(h, self.conv1)  # (B, c_out, 2H, 2W)
        else:
            h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv2(F.relu(self.bn2(h, y) if self.cond else self.bn2(h)))
        if self.fused:
            return h + F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResGBody(nn.Module):
    """n_up GBlocks, then BN-ReLU-conv3-Tanh to the image channels; takes the labels."""

    takes_labels = True  # Generator passes y here instead of concatenating an embedding to z

    def __init__(self, ch: list[int], channels: int, num_classes: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(
            GBlock(a, b, num_classes) for a, b in zip(ch[:-1], ch[1:], strict=True)
        )
        self.out = nn.Sequential(
            nn.BatchNorm2d(ch[-1]), nn.ReLU(True), nn.Conv2d(ch[-1], channels, 3, 1, 1), nn.Tanh()
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, y)  # (B, ch[i+1], 2H, 2W)
        return self.out(x)


class DBlock(nn.Module):
    """ReLU-conv3-ReLU-conv3 (+ 2x2 average pool) plus a conv1 shortcut. The first block (SNGAN's
    optimized block) skips the leading ReLU. A downsampling block runs its second conv and the
    pool as one strided conv (conv_pool), and pools before its shortcut conv (a 1x1 conv commutes
    with average pooling): the same function with fewer multiply-adds. fused=False runs it as
    SNGAN's code writes it (conv, then pool; the shortcut conv on the full-size side but in the
    first block), with the same parameters."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False, fused: bool = True):
        super().__init__()
        self.down, self.first, self.fused = down, first, fused
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        if not self.down:
            return self.conv2(F.relu(h)) + self.skip(x)
        if not self.fused:
            h = F.avg_pool2d(self.conv2(F.relu(h)), 2)
            return h + (
                self.skip(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.skip(x), 2)
            )
        h = conv_pool(F.relu(h), self.conv2)  # (B, c_out, H/2, W/2), floored for odd sides
        return h + self.skip(F.avg_pool2d(x, 2))


def set_fused(module: nn.Module, fused: bool) -> nn.Module:
    """Switch every residual block inside module to its fused (default) or plain forward."""
    for m in module.modules():
        if isinstance(m, (GBlock, DBlock)):
            m.fused = fused
    return module


class SumPool(nn.Module):
    """(B, C, H, W) -> (B, C), summed over space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum((2, 3))


def xavier_init(m: nn.Module) -> None:
    """SNGAN's initialisation of residual nets: Xavier-uniform convs and linears, zero biases."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# -- the builders: residual upsampling blocks in G with (conditional) BatchNorm, residual
# downsampling blocks in D (spectral norm from the spectral_norm key), sum pooling --------------


def resnet_g(width, channels, n_up, s0, upsample, z_in, num_classes=0, **_):
    if upsample not in ("default", "nearest"):
        raise GanError(
            f"config key 'upsample': arch resnet upsamples by nearest + conv; got {upsample!r}, "
            "use upsample=default"
        )
    ch = [width * 2 ** (n_up - i) for i in range(n_up + 1)]  # 28px: 4w (7x7), 2w (14), w (28)
    project = nn.Linear(z_in, ch[0] * s0 * s0)  # (B, 4w * 7 * 7), no norm: the block norms it
    return project, ch[0], s0, ResGBody(ch, channels, num_classes)


def resnet_d(width, channels, n_down, **_):
    ch = [width * 2**i for i in range(n_down)]  # 28px: w (14x14), 2w (7x7)
    blocks = [DBlock(channels, ch[0], down=True, first=True)]
    blocks += [DBlock(a, b, down=True) for a, b in zip(ch[:-1], ch[1:], strict=True)]
    blocks += [DBlock(ch[-1], ch[-1], down=False)]  # one more block at the coarsest side
    # ReLU then sum over space (SNGAN), not a mean: (B, ch[-1])
    return nn.Sequential(*blocks, nn.ReLU(), SumPool())
