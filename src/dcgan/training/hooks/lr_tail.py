"""The learning-rate tail (lr_schedule=linear_tail): both learning rates stay as set until the
last `fraction` of the run's steps, then fall linearly towards 0 by its end, which lets the
averaged generator settle.

The fall comes in `stages` equal steps (100 by default) rather than at every step, so a run
with CUDA graphs captures its step again at most that many times (a learning rate is baked
into a graph). The factor follows from the loop's step alone: a resumed or rolled-back run
is at the same point of the tail as an uninterrupted one, and the hook keeps no state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from dcgan.training.hooks.base import Hook, LoopView
from dcgan.training.settings import GANSettings


@dataclass(frozen=True)
class LRTailSettings:
    fraction: float  # the last fraction of the steps over which the rates fall
    total_steps: int  # the run's steps (epochs x steps per epoch)
    stages: int = 100


def tail_factor(step: int, settings: LRTailSettings) -> float:
    """The learning rates' factor for the steps after `step`: 1 before the tail, then
    1 - k / stages in its k-th stage (k = 0 .. stages - 1), the linear fall rounded up to a
    stage; never below 1 / stages (Adam with a rate of 0 would not move at all)."""
    tail_steps = max(1, math.ceil(settings.fraction * settings.total_steps))
    into_tail = step - (settings.total_steps - tail_steps)
    if into_tail <= 0:
        return 1.0
    stage = min(settings.stages - 1, into_tail * settings.stages // tail_steps)
    return 1.0 - stage / settings.stages


class LearningRateTail(Hook):
    name = "lr_tail"

    def __init__(self, settings: LRTailSettings):
        self.settings = settings
        self.factor = 1.0

    def on_fit_start(self, loop: LoopView) -> None:
        self.factor = tail_factor(loop.step, self.settings)  # the loop refreshes next

    def after_step(self, loop: LoopView) -> None:
        factor = tail_factor(loop.step, self.settings)
        if factor != self.factor:
            self.factor = factor
            loop.refresh_settings()

    def after_rollback(self, loop: LoopView, path: Path) -> None:
        self.factor = tail_factor(loop.step, self.settings)  # the loop refreshes next

    def window_scalars(self, loop: LoopView) -> dict[str, float]:
        return {"lr_factor": self.factor}

    def adjust(self, settings: GANSettings) -> GANSettings:
        if self.factor == 1.0:
            return settings
        return replace(settings, lr_g=settings.lr_g * self.factor, lr_d=settings.lr_d * self.factor)
