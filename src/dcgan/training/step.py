"""One training step described before it runs: what the step does (`StepPlan`: its branches, decided on the host), the numbers it reads
(`StepNumbers`: floats, or device tensors under a CUDA graph), and what D sees of an image.
The pair (pair.py) runs the step; CUDA graphs (graphs.py) capture it per kind of step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from dcgan.nets.augment import diff_augment, instance_noise
from dcgan.nets.ema import EMA
from dcgan.training.settings import GANSettings


@dataclass(frozen=True)
class StepPlan:
    """What one training step does, decided on the host before it runs: whether G steps,
    the chance of each augmentation (0 when there is none), the instance-noise std, what
    the moving average does ("off", "copy" the live G, or "fold" it in with `ema_weight`), and
    whether this step adds the (lazy) R1 penalty."""

    g_step: bool
    augment_p: float
    noise_std: float
    ema: str
    ema_weight: float = 0.0
    r1: bool = False

    @classmethod
    def of(cls, settings: GANSettings, ema: Optional[EMA], step: int, batch_images: int
           ) -> "StepPlan":
        """What training step `step` + 1 does, on batches of `batch_images` images in all."""
        g_step = (step + 1) % settings.d_steps == 0
        ema_weight = ema.weight_at(step + 1, batch_images) if g_step and ema else None
        return cls(g_step=g_step, augment_p=settings.augment_p if settings.augment else 0.0,
                   noise_std=settings.noise.std_at(step),
                   ema=("off" if not g_step or ema is None else
                        "copy" if ema_weight is None else "fold"),
                   ema_weight=ema_weight or 0.0,
                   r1=settings.reg.r1.on and (step + 1) % settings.reg.r1.interval == 0)

    @property
    def kind(self) -> tuple:
        """The branches the step takes, not its numbers: what a CUDA graph bakes in. Steps of
        one kind differ only in the numbers `numbers()` carries."""
        p = self.augment_p
        return (self.g_step, "none" if p <= 0 else "all" if p >= 1 else "some",
                self.noise_std > 0, self.ema, self.r1)

    def numbers(self) -> "StepNumbers":
        """The per-step numbers as Python floats (the eager step)."""
        return StepNumbers(augment_p=self.augment_p, noise_std=self.noise_std,
                           ema_weight=self.ema_weight)


@dataclass(frozen=True)
class StepNumbers:
    """The numbers a step reads that change from step to step: Python floats, or 0-dim
    device tensors where a CUDA graph replays the step (filled before each replay)."""

    augment_p: Union[float, torch.Tensor]
    noise_std: Union[float, torch.Tensor]
    ema_weight: Union[float, torch.Tensor]


def what_d_sees(images: torch.Tensor, settings: GANSettings, numbers: StepNumbers
                ) -> torch.Tensor:
    """DiffAugment and instance noise, as configured (both differentiable, both off by
    default); the same for real and fake images and in the G step."""
    if settings.augment:
        images = diff_augment(images, settings.augment, p=numbers.augment_p)
    return instance_noise(images, numbers.noise_std)
