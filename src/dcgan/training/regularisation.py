"""The regularisers of D's loss as the pair applies them (reg.*; the penalties themselves are
in dcgan.nets.regularisers): LeCam against anchors it keeps (and saves in the checkpoint), bCR
through the same D call as the loss, and R1 on the steps the step plan marks."""

from __future__ import annotations

from typing import Any, Callable

import torch

from dcgan.nets.regularisers import (
    LeCamAnchors,
    RegSettings,
    consistency_penalty,
    lecam_penalty,
    r1_penalty,
)
from dcgan.runtime.distributed import Distributed, tensor_mean_over_ranks


class DRegularisers:
    """What the configured regularisers add to D's loss at one D step, and LeCam's state."""

    def __init__(self, settings: RegSettings, device: torch.device, layout: Distributed):
        self.device, self.layout = device, layout
        self.lecam = LeCamAnchors(settings.lecam.decay, device) if settings.lecam.on else None

    def __call__(self, settings: RegSettings, d_forwards: tuple[Callable, Callable],
                 discriminator: Callable, autocast: Callable,
                 seen: tuple[torch.Tensor, torch.Tensor],
                 logits: tuple[torch.Tensor, torch.Tensor], r1_now: bool) -> torch.Tensor:
        """The weighted sum for this step: `seen` are the real and fake images as D saw them,
        `logits` its outputs on them, `d_forwards` D's step call for real and for fake images
        (each with its labels bound, for a conditional D) and `discriminator` D's plain module
        (with the real labels bound). LeCam's anchors take this batch in first (as in the
        paper's code; averaged over ranks under torchrun, so every rank holds the same ones);
        R1 runs D's plain module (as the WGAN-GP penalty does) and is scaled by its interval."""
        (real_seen, fake_seen), (real_logits, fake_logits) = seen, logits
        total = torch.zeros((), device=self.device)
        if settings.lecam.on:
            means = torch.stack([real_logits.detach().float().mean(),
                                 fake_logits.detach().float().mean()])
            self.lecam.update(*tensor_mean_over_ranks(means, self.layout).unbind())
            total = total + settings.lecam.weight * lecam_penalty(
                real_logits, fake_logits, self.lecam.real, self.lecam.fake)
        for weight, d_forward, images, outputs in (
                (settings.bcr.real, d_forwards[0], real_seen, real_logits),
                (settings.bcr.fake, d_forwards[1], fake_seen, fake_logits)):
            if weight > 0:
                with autocast():
                    total = total + weight * consistency_penalty(d_forward, images, outputs,
                                                                 settings.bcr.ops)
        if r1_now:
            total = total + settings.r1.interval * r1_penalty(discriminator, real_seen,
                                                              settings.r1.gamma)
        return total

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's entries (none when LeCam is off: the format stays as it was)."""
        return {"lecam": self.lecam.state_dict()} if self.lecam is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.lecam is not None and "lecam" in state:  # turned on at a resume: from 0
            self.lecam.load_state_dict(state["lecam"])
