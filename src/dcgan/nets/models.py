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

A conditional pair (Architecture.condition "class" or "attributes") reads a label vector y
[N, K] beside its input (dcgan.nets.conditioning). By concat (the default style), y is joined
to z and, as K constant planes, to D's input image; by projection, G's BatchNorms become
conditional (gain and bias from y) and D adds <embed(y), its pooled last features> to its
logit (Miyato & Koyama, 2018). Concat is the default because it follows the labels within the
quickstart's budget where projection did not (docs/conditional.md has the measurements). Unconditional networks are built exactly
as without these switches (the same layers, parameter counts and state-dict keys).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from dcgan.nets.conditioning import ConditionalBatchNorm2d


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
    condition: str = "none"  # none | class | attributes
    label_size: int = 0  # K, the length of the label vector (classes or attributes); 0: none
    condition_style: str = "concat"  # concat (y joined to the inputs) | projection (cBN, projection)

    @property
    def conditional(self) -> bool:
        return self.condition != "none"

    @property
    def middle_blocks(self) -> int:
        # 64x64: 4 -> 8 -> 16 -> 32 are the three middle blocks; the output layer makes 64.
        return int(math.log2(self.image_size)) - 3

    def as_dict(self) -> dict[str, int | bool]:
        """The fields as a plain dict (ints, bools, strings), for checkpoints and file
        metadata; an unconditional architecture leaves the conditioning fields out, so its
        checkpoints read as they always did."""
        fields = asdict(self)
        if not self.conditional:
            for name in ("condition", "label_size", "condition_style"):
                del fields[name]
        return fields

    def describe(self) -> str:
        """One line for error messages: the fields that differ between two runs."""
        extras = ("" if self.d_batchnorm else " no D BatchNorm") + (
            " D spectral norm" if self.d_spectral_norm else "")
        if self.conditional:
            extras += f" conditioned on {self.label_size} {self.condition} ({self.condition_style})"
        return (f"nz={self.nz} ngf={self.ngf} ndf={self.ndf} channels={self.channels} "
                f"image_size={self.image_size}{extras}")

    @classmethod
    def derive(cls, *, nz: int, ngf: int, ndf: int, channels: int, image_size: int,
               loss: str = "bce", d_batchnorm: Optional[bool] = None,
               spectral_norm: bool = False, condition: str = "none", label_size: int = 0,
               condition_style: str = "concat") -> "Architecture":
        """The architecture a run's settings imply: d_batchnorm=None means BatchNorm in D
        except for wgan_gp, whose penalty is per image (BatchNorm mixes images)."""
        if d_batchnorm is None:
            d_batchnorm = loss != "wgan_gp"
        return cls(nz=nz, ngf=ngf, ndf=ndf, channels=channels, image_size=image_size,
                   d_batchnorm=d_batchnorm, d_spectral_norm=spectral_norm,
                   condition=condition, label_size=label_size if condition != "none" else 0,
                   condition_style=condition_style)


def _up_block(c_in: int, c_out: int, norm: Callable[[int], nn.Module]) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        norm(c_out),
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
    """z (N x nz x 1 x 1, or N x nz) [, y (N x K)] -> images (N x channels x S x S) in [-1, 1]."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.joins_labels = arch.conditional and arch.condition_style == "concat"
        if arch.conditional and not self.joins_labels:
            def norm(c: int) -> nn.Module:
                return ConditionalBatchNorm2d(c, arch.label_size)
        else:
            norm = nn.BatchNorm2d
        top = arch.ngf * 2**arch.middle_blocks  # 8 * ngf at 64x64
        z_in = arch.nz + (arch.label_size if self.joins_labels else 0)  # (nz [+ K]) x 1 x 1
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_in, top, 4, 1, 0, bias=False),
            norm(top),
            nn.ReLU(inplace=True),
        ]  # (ngf*8) x 4 x 4
        width = top
        for _ in range(arch.middle_blocks):
            layers += _up_block(width, width // 2, norm)
            width //= 2
        # (ngf*4) x 8 x 8  ->  (ngf*2) x 16 x 16  ->  ngf x 32 x 32
        layers += [nn.ConvTranspose2d(width, arch.channels, 4, 2, 1, bias=False), nn.Tanh()]
        # channels x 64 x 64
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if not self.arch.conditional:
            return self.main(z)
        if self.joins_labels:
            return self.main(torch.cat([z, y.to(z.dtype)[:, :, None, None]], 1))
        x = z
        for layer in self.main:  # the conditional BatchNorms read y
            x = layer(x, y) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


class Discriminator(nn.Module):
    """Images (N x channels x S x S) [, y (N x K)] -> one logit per image (N,).
    Probability = sigmoid(logit)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.joins_labels = arch.conditional and arch.condition_style == "concat"
        c_in = arch.channels + (arch.label_size if self.joins_labels else 0)  # y as K planes
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, arch.ndf, 4, 2, 1, bias=False),
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
        if arch.conditional and not self.joins_labels:  # the projection: y -> (ndf*8)
            self.embed = nn.Linear(arch.label_size, width, bias=False)
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
            if arch.d_spectral_norm:
                spectral_norm(self.embed)

    def forward(self, images: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.arch.conditional:
            return self.main(images).flatten()
        if self.joins_labels:
            planes = y.to(images.dtype)[:, :, None, None].expand(-1, -1, *images.shape[2:])
            return self.main(torch.cat([images, planes], 1)).flatten()
        features = self.main[:-1](images)  # (ndf*8) x 4 x 4
        pooled = features.sum((2, 3))  # (ndf*8), summed over positions as in the paper
        projection = (self.embed(y.to(pooled.dtype)) * pooled).sum(1)
        return self.main[-1](features).flatten() + projection


def freeze_first_blocks(discriminator: Discriminator, blocks: int) -> list[nn.Parameter]:
    """Fix D's first `blocks` convolution blocks (each convolution and what follows it up to
    the next; Mo et al., 2020, "Freeze the Discriminator"); returns the parameters that still
    train."""
    convolutions = 0
    for layer in discriminator.main:
        convolutions += isinstance(layer, nn.Conv2d)
        if convolutions <= blocks:
            layer.requires_grad_(False)
    return [parameter for parameter in discriminator.parameters() if parameter.requires_grad]


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
    elif isinstance(module, nn.BatchNorm2d) and module.affine:  # (cBN: its own init)
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
