"""BatchNorm statistics that belong to the weights that sample.

G's running statistics are averages over training batches made by earlier weights, and the
moving average of G (EMA) only copies the live network's statistics, which belong to other
weights still. Re-estimating them for the weights at hand, from batches of noise run through
the network in train mode and averaged with equal weight (as torch.optim.swa_utils.update_bn
does for SWA), makes samples, evaluations and exports come from a consistent network
(ema.recalibrate_bn; README "Stable training" has the measurements).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from dcgan.nets.models import in_mode

# n label vectors [n, K] for a conditional G, drawn with the given private CPU generator
LabelDraw = Callable[[int, torch.Generator], torch.Tensor]

BN_BATCHES = 20  # batches of noise per re-estimation
BN_BATCH_SIZE = 128  # the paper's batch
BN_SEED = 0  # the noise is the same every time: the statistics depend on the weights alone


class RecalibratedCopy:
    """A copy of the generator that samples, its BatchNorm statistics re-estimated for its
    weights; refreshed when asked for after the source trained (`stale`), at most once a step.

    Nothing of it flows back into training: it loads a copy of the source's weights and draws
    its noise from a private RNG."""

    def __init__(self, build: Callable[[], nn.Module], nz: int,
                 labels: Optional["LabelDraw"] = None):
        self.build, self.nz, self.labels = build, nz, labels
        self.module: Optional[nn.Module] = None
        self.stale = True
        self.estimated = False  # whether `module` holds an estimate (for these or earlier weights)

    def of(self, source: nn.Module) -> nn.Module:
        if self.module is None:  # built fresh: plain BatchNorm even where training syncs it
            with torch.random.fork_rng(devices=[]):  # its initial weights draw from the CPU RNG
                self.module = self.build().eval().requires_grad_(False)
        if self.stale:
            self.module.load_state_dict(source.state_dict())
            recalibrate_batchnorm(self.module, self.nz, labels=self.labels)
            self.stale, self.estimated = False, True
        return self.module

    @property
    def current(self) -> bool:
        """Whether the last estimate belongs to the source's present weights."""
        return self.estimated and not self.stale

    def last_estimate(self) -> Optional[dict[str, torch.Tensor]]:
        """The BatchNorm buffers of the newest estimate, without making a new one (it may be
        for earlier weights: see `current`); None before the first."""
        if self.module is None or not self.estimated:
            return None
        return batchnorm_state(self.module)


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, nz: int, batches: int = BN_BATCHES,
                          batch_size: int = BN_BATCH_SIZE, seed: int = BN_SEED,
                          labels: Optional["LabelDraw"] = None) -> None:
    """Replace the running mean and variance of every BatchNorm layer of `generator` by their
    average over `batches` batches of its own samples (a conditional G: for labels drawn by
    `labels`, as training draws them for fakes). Draws from a private RNG (training's random
    streams are untouched); leaves the network in the mode it was in."""
    norms = batchnorm_layers(generator)
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative (equal-weight) average over the batches
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    try:
        with in_mode(generator, training=True):
            for _ in range(batches):
                noise = torch.randn(batch_size, nz, 1, 1, generator=rng).to(device)
                if labels is None:
                    generator(noise)
                else:
                    generator(noise, labels(batch_size, rng))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def batchnorm_state(generator: nn.Module) -> dict[str, torch.Tensor]:
    """The BatchNorm buffers of `generator` (running mean, variance, batch count) by name."""
    names = {id(norm) for norm in batchnorm_layers(generator)}
    return {f"{prefix}.{name}" if prefix else name: buffer.detach().clone()
            for prefix, module in generator.named_modules() if id(module) in names
            for name, buffer in module.named_buffers(recurse=False)}
