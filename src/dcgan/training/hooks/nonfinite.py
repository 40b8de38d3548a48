"""Recovery from a non-finite loss: with nonfinite.policy=rollback, a NaN or Inf loss sends the
run back to its newest checkpoint from before that step with both learning rates multiplied by
`lr_factor`, up to `max_retries` times; after that (or with policy=stop) the run stops as it
always did: exit code 3, the state before the bad update saved for inspection.

The lowered rates are this hook's own state (`lr_scale`), so a resume keeps them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dcgan.training.hooks.base import Answer, Hook, LoopView, RollBack
from dcgan.training.pair import NonFiniteLoss
from dcgan.training.settings import GANSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NonFiniteSettings:
    policy: str = "stop"  # stop | rollback
    lr_factor: float = 0.5  # both learning rates are multiplied by this at each retry
    max_retries: int = 3  # rollbacks before a non-finite loss stops the run


class NonFiniteRecovery(Hook):
    name = "nonfinite"

    def __init__(self, settings: NonFiniteSettings):
        self.settings = settings
        self.retries = 0
        self.lr_scale = 1.0  # what the retries multiplied both learning rates by
        # answered, not yet carried out: the error, and the retries and scale to have after it
        # (the checkpoint the loop reloads brings back this hook's older state)
        self.pending: tuple[NonFiniteLoss, int, float] | None = None

    def on_error(self, loop: LoopView, error: Exception) -> Answer:
        if not isinstance(error, NonFiniteLoss) or self.settings.policy != "rollback":
            return None
        if self.retries >= self.settings.max_retries:
            log.warning("non-finite loss again after %d recovery attempt(s) "
                        "(nonfinite.max_retries): stopping", self.retries)
            return None
        self.pending = (error, self.retries + 1, self.lr_scale * self.settings.lr_factor)
        return RollBack(onset=error.step, reason=f"{error}", error=error)

    def after_rollback(self, loop: LoopView, path: Path) -> None:
        """The loop reloaded `path` (and this hook's state with it): one more retry, lower
        rates from here on."""
        pending, self.pending = self.pending, None
        if pending is None:  # a rollback another hook asked for
            return
        error, self.retries, self.lr_scale = pending
        lowered = loop.hooks.adjust(loop.base_settings)  # the hooks before it are up to date
        message = (f"non-finite {error.which} at step {error.step}: rolled back to {path.name} "
                   f"(step {loop.step}) with lr_g={lowered.lr_g:.3g}, lr_d={lowered.lr_d:.3g} "
                   f"(retry {self.retries} of {self.settings.max_retries})")
        log.warning(message)
        loop.loggers.text("nonfinite", message, loop.step)

    def adjust(self, settings: GANSettings) -> GANSettings:
        if self.lr_scale == 1.0:
            return settings
        return replace(settings, lr_g=settings.lr_g * self.lr_scale,
                       lr_d=settings.lr_d * self.lr_scale)

    def state_dict(self) -> dict[str, Any]:
        return {"retries": self.retries, "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.retries = int(state.get("retries", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
