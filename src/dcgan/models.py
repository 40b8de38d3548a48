"""The DCGAN generator and discriminator (Radford et al., 2016, and the tables in the paper).

Shape comments are for the default 64x64 images; other supported sizes (32, 128) drop or add
one middle block per factor of two. Neither network has convolution biases: each convolution
is followed by BatchNorm (or is the output layer, as in the reference implementation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the shapes of the weights; stored in every checkpoint."""

    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    channels: int = 3
    image_size: int = 64

    @property
    def middle_blocks(self) -> int:
        # 64x64: 4 -> 8 -> 16 -> 32 are the three middle blocks; the output layer makes 64.
        return int(math.log2(self.image_size)) - 3

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _up_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _down_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    ]


class Generator(nn.Module):
    """z (N x nz x 1 x 1, or N x nz) -> images (N x channels x S x S) in [-1, 1]."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        top = arch.ngf * 2**arch.middle_blocks  # 8 * ngf at 64x64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(arch.nz, top, 4, 1, 0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(inplace=True),
        ]  # (ngf*8) x 4 x 4
        width = top
        for _ in range(arch.middle_blocks):
            layers += _up_block(width, width // 2)
            width //= 2
        # (ngf*4) x 8 x 8  ->  (ngf*2) x 16 x 16  ->  ngf x 32 x 32
        layers += [nn.ConvTranspose2d(width, arch.channels, 4, 2, 1, bias=False), nn.Tanh()]
        # channels x 64 x 64
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class Discriminator(nn.Module):
    """Images (N x channels x S x S) -> one logit per image (N,). Probability = sigmoid(logit)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = [
            nn.Conv2d(arch.channels, arch.ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]  # ndf x 32 x 32 (no BatchNorm on the input layer, as in the paper)
        width = arch.ndf
        for _ in range(arch.middle_blocks):
            layers += _down_block(width, width * 2)
            width *= 2
        # (ndf*2) x 16 x 16  ->  (ndf*4) x 8 x 8  ->  (ndf*8) x 4 x 4
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        # 1 x 1 x 1: a logit, no Sigmoid (the loss applies it, without saturating)
        self.main = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: convolutions N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(arch: Architecture) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator and discriminator (draws from torch's global RNG)."""
    generator, discriminator = Generator(arch), Discriminator(arch)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
