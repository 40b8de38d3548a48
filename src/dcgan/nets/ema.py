"""An exponential moving average of a network's weights (e.g. the generator's).

Averaging G's weights over the last ~1/(1 - decay) steps smooths out the oscillation of
adversarial training; samples and evaluation then use the average, training the live
weights (Yazıcı et al., 2019, "The Unusual Effectiveness of Averaging in GAN Training";
Karras et al. use it in ProGAN and StyleGAN).

The horizon is a fixed decay per step (ema.decay), or a half-life in images
(ema.half_life_images, StyleGAN's ema_kimg), which means the same at any batch size: a step
of B images decays the old average by 0.5 ** (B / half_life). With a ramp-up the half-life
is at most `rampup` times the images seen so far, so the first, poor weights do not linger.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping, Optional, Union

import torch
from torch import nn


class EMA:
    """A frozen copy of `module` whose parameters follow the live ones:

        ema = decay * ema + (1 - decay) * live      at each update after start_step

    At steps up to and including `start_step` an update copies the live weights instead
    (the average starts from them). Buffers, such as BatchNorm's running statistics, are
    always copied. `module` is the averaged network, in eval mode, without gradients.
    Pass the plain network (not its DDP or torch.compile wrapper) to the constructor and to
    `update`, so the parameter names match.
    """

    def __init__(self, module: nn.Module, decay: float, start_step: int = 0,
                 half_life_images: Optional[float] = None, rampup: Optional[float] = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.start_step = decay, start_step
        self.half_life_images, self.rampup = half_life_images, rampup
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    def decay_at(self, step: int, batch_images: int) -> float:
        """The decay of the update after training step `step`, whose batch held
        `batch_images` images (over all processes)."""
        if self.half_life_images is None:
            return self.decay
        half_life = self.half_life_images
        if self.rampup:
            half_life = min(half_life, step * batch_images * self.rampup)
        return 0.5 ** (batch_images / max(half_life, 1e-8))

    def weight_at(self, step: int, batch_images: int) -> Optional[float]:
        """The share of the live weights in the update after training step `step`
        (1 - decay); None up to `start_step`, where the update copies them."""
        if step <= self.start_step:
            return None
        return 1.0 - self.decay_at(step, batch_images)

    def update(self, module: nn.Module, step: int, batch_images: int = 1) -> None:
        """Fold the live weights of `module` (after training step `step`) into the average."""
        self.fold(module, self.weight_at(step, batch_images))

    @torch.no_grad()
    def fold(self, module: nn.Module, weight: Union[float, torch.Tensor, None]) -> None:
        """average += weight * (live - average); None copies the live weights. A tensor
        weight (on the weights' device) is only read on the device (a CUDA graph's input)."""
        if weight is None:
            self.copy_from(module)
            return
        for average, live in _matching(self.module.named_parameters(),
                                       module.named_parameters()):
            average.lerp_(live.detach(), weight)
        self._copy_buffers(module)

    @torch.no_grad()
    def copy_from(self, module: nn.Module) -> None:
        """Reset the average to the live weights and buffers of `module`."""
        for average, live in _matching(self.module.named_parameters(),
                                       module.named_parameters()):
            average.copy_(live.detach())
        self._copy_buffers(module)

    def _copy_buffers(self, module: nn.Module) -> None:
        for average, live in _matching(self.module.named_buffers(), module.named_buffers()):
            average.copy_(live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict: names to tensors (torch.load(weights_only=True)
        reads it back); the same keys as the live network's, so it loads into one too."""
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the average from `state_dict()`'s output (strict: every key must fit)."""
        self.module.load_state_dict(state)


def _matching(averaged: Iterable[tuple[str, torch.Tensor]], live: Iterable[tuple[str, torch.Tensor]]
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of same-named tensors; raises ValueError when the two networks differ."""
    ours, theirs = dict(averaged), dict(live)
    if ours.keys() != theirs.keys():
        raise ValueError("EMA.update got a network whose tensors do not match the averaged "
                         f"copy: {sorted(ours.keys() ^ theirs.keys())[:4]}")
    return [(ours[name], theirs[name]) for name in ours]
