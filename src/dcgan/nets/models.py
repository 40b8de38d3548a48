"""The DCGAN generator and discriminator (Radford et al., 2016, and the tables in the paper).

Shape comments are for the default 64x64 images; other supported sizes (32, 128) drop or add
one middle block per factor of two. By default neither network has convolution biases: each
convolution is followed by BatchNorm (or is the output layer, as in the reference code).

Two switches of the discriminator, both off by default (the defaults are the paper's D):
`d_batchnorm=False` drops BatchNorm from its middle blocks, whose convolutions then get the
bias BatchNorm's shift used to provide (WGAN-GP penalises each image's gradient, which
BatchNorm would mix across the batch); `d_spectral_norm=True` divides every convolution's
weight by its largest singular value (Miyato et al., 2018), estimated by one power iteration
per forward pass in train mode.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes the shapes of the weights; stored in every checkpoint."""

    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    channels: int = 3
    image_size: int = 64
    d_batchnorm: bool = True  # False: D's middle blocks without BatchNorm (WGAN-GP)
    d_spectral_norm: bool = False  # spectral normalisation on every convolution of D

    @property
    def middle_blocks(self) -> int:
        # 64x64: 4 -> 8 -> 16 -> 32 are the three middle blocks; the output layer makes 64.
        return int(math.log2(self.image_size)) - 3

    def as_dict(self) -> dict[str, int | bool]:
        """The fields as a plain dict (ints and bools), for checkpoints and file metadata."""
        return asdict(self)

    def describe(self) -> str:
        """One line for error messages: the fields that differ between two runs."""
        extras = ("" if self.d_batchnorm else " no D BatchNorm") + (
            " D spectral norm" if self.d_spectral_norm else "")
        return (f"nz={self.nz} ngf={self.ngf} ndf={self.ndf} channels={self.channels} "
                f"image_size={self.image_size}{extras}")

    @classmethod
    def derive(cls, *, nz: int, ngf: int, ndf: int, channels: int, image_size: int,
               loss: str = "bce", d_batchnorm: Optional[bool] = None,
               spectral_norm: bool = False) -> "Architecture":
        """The architecture a run's settings imply: d_batchnorm=None means BatchNorm in D
        except for wgan_gp, whose penalty is per image (BatchNorm mixes images)."""
        if d_batchnorm is None:
            d_batchnorm = loss != "wgan_gp"
        return cls(nz=nz, ngf=ngf, ndf=ndf, channels=channels, image_size=image_size,
                   d_batchnorm=d_batchnorm, d_spectral_norm=spectral_norm)


def _up_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _down_block(c_in: int, c_out: int, batchnorm: bool = True) -> list[nn.Module]:
    if not batchnorm:  # the bias stands in for BatchNorm's shift
        return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, inplace=True)]
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
            layers += _down_block(width, width * 2, arch.d_batchnorm)
            width *= 2
        # (ndf*2) x 16 x 16  ->  (ndf*4) x 8 x 8  ->  (ndf*8) x 4 x 4
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        # 1 x 1 x 1: a logit, no Sigmoid (the loss applies it, without saturating)
        if arch.d_spectral_norm:
            for layer in layers:
                if isinstance(layer, nn.Conv2d):
                    spectral_norm(layer)  # weight -> parametrizations.weight.original
        self.main = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).flatten()


def freeze_first_blocks(discriminator: Discriminator, blocks: int) -> list[nn.Parameter]:
    """Fix D's first `blocks` convolution blocks (each convolution and what follows it up to
    the next; Mo et al., 2020, "Freeze the Discriminator"); returns the parameters that still
    train."""
    convolutions, trainable = 0, []
    for layer in discriminator.main:
        convolutions += isinstance(layer, nn.Conv2d)
        for parameter in layer.parameters():
            if convolutions <= blocks:
                parameter.requires_grad_(False)
            else:
                trainable.append(parameter)
    return trainable


def architecture_difference(saved: Architecture, wanted: Architecture) -> str:
    """What differs between two architectures, e.g. "ngf 64 (checkpoint) vs 32 (config)"."""
    return ", ".join(f"{name} {getattr(saved, name)} (checkpoint) vs {getattr(wanted, name)} "
                     "(config)" for name in saved.__dataclass_fields__
                     if getattr(saved, name) != getattr(wanted, name))


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: convolutions N(0, 0.02) (bias, where there is one, 0); BatchNorm
    weight N(1, 0.02), bias 0. A spectrally normalised convolution has its raw weight drawn
    and its singular-vector estimates refreshed, so sigma fits the new weight at once."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        if parametrize.is_parametrized(module, "weight"):
            nn.init.normal_(module.parametrizations.weight.original, 0.0, 0.02)
            _refresh_power_iteration(module)
        else:
            nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def _refresh_power_iteration(module: nn.Module, iterations: int = 50) -> None:
    # Reading a spectrally normalised weight in train mode runs one power iteration; the
    # estimates made at registration belong to the weight that init_weights just replaced.
    with in_mode(module.parametrizations.weight, training=True):
        for _ in range(iterations):
            _ = module.weight


@contextmanager
def in_mode(module: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Run a block with `module` in train (True) or eval (False) mode, then restore its mode:
    e.g. samples from G with BatchNorm's running statistics in the middle of training."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


def build_models(arch: Architecture) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator and discriminator (draws from torch's global RNG)."""
    generator, discriminator = Generator(arch), Discriminator(arch)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator


def count_parameters(module: nn.Module) -> int:
    """The number of trainable values (spectral norm's u and v are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())
