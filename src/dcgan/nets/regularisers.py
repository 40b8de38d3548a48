"""Regularisers of the discriminator made for small data sets, each a small pure function
beside the losses (losses.py); the pair adds the configured ones to D's loss (`reg.*` keys).

  lecam  LeCam (Tseng et al., CVPR 2021): D's outputs are held near moving averages of its
         outputs on the other kind of image:
         weight * (E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]).
  r1     R1 (Mescheder et al., 2018): gamma / 2 * E[||grad_x D(x)||^2] on the real images D
         sees; lazily, on every `interval`-th step only, then scaled by `interval` (as
         StyleGAN2 does), so the average strength is the same.
  bcr    balanced consistency (Zhao et al., 2020): E[(D(x) - D(T(x)))^2] for real and for fake
         images, each with its own weight, T a DiffAugment policy applied on top of what D sees.

Every function returns a float32 scalar, whatever the dtype of D's outputs (autocast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dcgan.nets.augment import diff_augment


@dataclass(frozen=True)
class LeCamSettings:
    weight: float = 0.0  # 0: off
    decay: float = 0.99  # of the moving averages of D's mean outputs

    @property
    def on(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class R1Settings:
    gamma: float = 0.0  # 0: off
    interval: int = 16  # steps between penalties (lazy regularisation)

    @property
    def on(self) -> bool:
        return self.gamma > 0


@dataclass(frozen=True)
class BCRSettings:
    real: float = 0.0  # weight of the real images' term; 0: off
    fake: float = 0.0  # weight of the fake images' term; 0: off
    ops: tuple[str, ...] = ("translation", "cutout")  # T: DiffAugment operations

    @property
    def on(self) -> bool:
        return self.real > 0 or self.fake > 0


@dataclass(frozen=True)
class RegSettings:
    """The regularisers a run adds to D's loss; all off by default."""

    lecam: LeCamSettings = LeCamSettings()
    r1: R1Settings = R1Settings()
    bcr: BCRSettings = BCRSettings()

    @property
    def on(self) -> bool:
        return self.lecam.on or self.r1.on or self.bcr.on


def lecam_penalty(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                  anchor_real: torch.Tensor, anchor_fake: torch.Tensor) -> torch.Tensor:
    """E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2], unweighted."""
    real, fake = real_logits.float().flatten(), fake_logits.float().flatten()
    return F.relu(real - anchor_fake).square().mean() + F.relu(anchor_real - fake).square().mean()


class LeCamAnchors:
    """The moving averages of D's mean output on real and on fake images that LeCam anchors
    to: 0-dim float32 tensors on the device, updated in place (no host read, so a CUDA graph
    can capture the update). They start at 0, as in the paper's code."""

    def __init__(self, decay: float, device: torch.device):
        self.decay = decay
        self.real = torch.zeros((), device=device)
        self.fake = torch.zeros((), device=device)

    def update(self, real_mean: torch.Tensor, fake_mean: torch.Tensor) -> None:
        self.real.lerp_(real_mean.detach().float(), 1.0 - self.decay)
        self.fake.lerp_(fake_mean.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real.detach().cpu().clone(), "fake": self.fake.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.real.copy_(state["real"])
        self.fake.copy_(state["fake"])


def r1_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * mean over images of ||grad_x D(x)||^2, D in float32 (autocast off) and in
    its current mode. The graph is kept (create_graph=True), so backward() reaches D."""
    real = real.detach().float().requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        scores = discriminator(real).float()
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return 0.5 * gamma * grad.flatten(1).square().sum(dim=1).mean()


def consistency_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor],
                        images: torch.Tensor, logits: torch.Tensor,
                        ops: tuple[str, ...]) -> torch.Tensor:
    """mean((D(images) - D(T(images)))^2), unweighted: `logits` are D(images), T every
    operation of `ops` on every image. Gradients flow through both sides, as in bCR."""
    augmented_logits = discriminator(diff_augment(images, ops, p=1.0))
    return (logits.float().flatten() - augmented_logits.float().flatten()).square().mean()
