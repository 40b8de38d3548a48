"""The adaptive augmentation controller (augment.p=ada; Karras et al., 2020, "Training
Generative Adversarial Networks with Limited Data"): every `interval` steps it reads how sure D
has been of the real images, r_t = E[sign(D(real))] over those steps, and moves the
augmentation probability p up when r_t is above the target (D is memorising the data set) and
down when it is below. p reaches the pair through `adjust`; p and r_t are logged with each
window (augment/p, augment/rt) and kept in the checkpoint, so a resumed run goes on exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import torch

from dcgan.nets.augment import AdaSettings
from dcgan.runtime.distributed import SINGLE, Distributed, mean_over_ranks
from dcgan.training.hooks.base import Hook, LoopView
from dcgan.training.settings import GANSettings


class AdaptiveAugmentation(Hook):
    name = "augment"

    def __init__(self, settings: Optional[AdaSettings], layout: Distributed = SINGLE):
        self.settings, self.layout = settings, layout  # None: p fixed by the config
        self.p = 0.0  # ada starts without augmentation and adds it as D overfits
        self.rt_sum: Optional[torch.Tensor] = None  # E[sign(D(real))] summed since the last move
        self.rt_steps = 0
        self.rt = float("nan")  # the newest interval's mean

    def after_step(self, loop: LoopView) -> None:
        if self.settings is None:
            return
        sign = loop.step_metrics["real_sign"]
        self.rt_sum = sign if self.rt_sum is None else self.rt_sum + sign
        self.rt_steps += 1
        if self.rt_steps < self.settings.interval:
            return
        self.rt = mean_over_ranks(float(self.rt_sum) / self.rt_steps, self.layout, loop.device)
        images_per_step = loop.settings.batch_size * self.layout.world_size
        self.p = self.settings.next_p(self.p, self.rt, images_per_step)
        self.rt_sum, self.rt_steps = None, 0
        loop.refresh_settings()

    def adjust(self, settings: "GANSettings") -> "GANSettings":
        return settings if self.settings is None else replace(settings, augment_p=self.p)

    def window_scalars(self, loop: LoopView) -> dict[str, float]:
        return {} if self.settings is None else {"augment_p": self.p}

    def state_dict(self) -> dict[str, Any]:
        pending = float(self.rt_sum) if self.rt_sum is not None else 0.0
        return {"p": self.p, "rt_sum": pending, "rt_steps": self.rt_steps, "rt": self.rt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state.get("p", 0.0))
        self.rt_steps = int(state.get("rt_steps", 0))
        self.rt_sum = torch.tensor(float(state["rt_sum"])) if self.rt_steps else None
        self.rt = float(state.get("rt", float("nan")))
