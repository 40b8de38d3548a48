"""The collapse guard: feeds each log window and each evaluation's diversity to the collapse
detector (dcgan.training.collapse) and, on a verdict, acts as collapse.policy says: warn and go on,
stop, or roll back to the newest checkpoint from before the trouble with stabilisers on
(a lower lr_d, instance noise, label smoothing: collapse.rollback).

The stabilisers a rollback turned on are this hook's own state (`Stabilisers`), applied to
the GAN pair's settings through `adjust`; the config is never changed. They survive a resume.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from dcgan.training.collapse import CollapseDetector, CollapseSettings, Verdict
from dcgan.training.hooks.base import Answer, Hook, LoopView, RollBack, Stop
from dcgan.training.settings import GANSettings

log = logging.getLogger(__name__)

CLASS_DIVERSITY = "diversity/"  # a class-conditional evaluation's per-class diversity ratios


@dataclass(frozen=True)
class RollbackSettings:
    lr_d_factor: float = 0.5  # D's learning rate is multiplied by this
    instance_noise: float = 0.1  # instance noise std (annealed over the rest of the run)
    real_label: float = 0.9  # one-sided label smoothing (bce and lsgan only)
    max_rollbacks: int = 3  # after this many, the policy acts as `stop`


@dataclass(frozen=True)
class GuardSettings:
    policy: str = "warn"  # off | warn | stop | rollback
    detector: CollapseSettings = field(default_factory=CollapseSettings)
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    loss: str = "bce"  # the loss and probability rules are written for bce


@dataclass(frozen=True)
class Stabilisers:
    """What rollbacks have turned on; None: as configured."""

    lr_d_scale: float = 1.0  # D's configured learning rate is multiplied by this
    instance_noise: Optional[float] = None  # its std, annealed to 0 by the end of the run
    real_label: Optional[float] = None
    noise_start_step: int = 0  # the instance noise annealing restarts at the rollback

    def applied_to(self, settings: GANSettings) -> GANSettings:
        noise = settings.noise
        if self.instance_noise is not None:
            noise = replace(noise, std=self.instance_noise, anneal_epochs=None)
        return replace(
            settings, noise=replace(noise, start_step=self.noise_start_step),
            lr_d=settings.lr_d if self.lr_d_scale == 1.0 else settings.lr_d * self.lr_d_scale,
            real_label=settings.real_label if self.real_label is None else self.real_label)


@dataclass(frozen=True)
class _PendingRollback:
    rollbacks: int
    stabilisers: Stabilisers
    changes: str
    verdict: Verdict


class CollapseGuard(Hook):
    name = "collapse"

    def __init__(self, settings: GuardSettings):
        self.settings = settings
        self.detector = CollapseDetector(settings.detector)
        self.rollbacks = 0
        self.stabilisers = Stabilisers()
        self.pending: Optional[_PendingRollback] = None  # answered, not yet carried out

    @property
    def watching(self) -> bool:
        return self.settings.policy != "off"

    def adjust(self, settings: GANSettings) -> GANSettings:
        if self.stabilisers == Stabilisers():
            return settings
        return self.stabilisers.applied_to(settings)

    def after_window(self, loop: LoopView, values: dict[str, float]) -> Answer:
        if not self.watching or self.settings.loss != "bce" or "loss_g" not in values:
            return None
        verdict = self.detector.observe(loop.step, values["loss_d"], values["loss_g"],
                                        values["real_prob"], values["fake_prob"])
        return self.act(loop, verdict)

    def on_epoch_end(self, loop: LoopView) -> Answer:
        if "diversity" not in loop.epoch_metrics:
            return None
        verdict = self.detector.observe_diversity(loop.step, loop.epoch_metrics["diversity"])
        per_class = {key.partition("/")[2]: value for key, value in loop.epoch_metrics.items()
                     if key.startswith(CLASS_DIVERSITY)}
        if verdict is None and per_class:
            verdict = self.detector.observe_class_diversity(loop.step, per_class)
        return self.act(loop, verdict)

    def act(self, loop: LoopView, verdict: Optional[Verdict]) -> Answer:
        """Say so (console and loggers), then answer as the policy says."""
        if verdict is None or not self.watching:
            return None
        policy = self.settings.policy
        log.warning("collapse detected: %s", verdict.message)
        loop.loggers.text("collapse", f"step {verdict.step}: {verdict.message} "
                          f"(collapse.policy={policy})", loop.step)
        if policy == "warn":
            return None
        if policy == "rollback" and self.rollbacks < self.settings.rollback.max_rollbacks:
            stabilisers, changes = self.escalated(loop.gan.settings)
            self.pending = _PendingRollback(self.rollbacks + 1, stabilisers, changes, verdict)
            return RollBack(onset=collapse_onset(verdict), reason=verdict.message)
        why = ("" if policy == "stop" else
               f" after {self.rollbacks} rollback(s) (collapse.rollback.max_rollbacks)")
        return Stop(f"stopped at step {loop.step}{why}: {verdict.message}")

    def escalated(self, current: GANSettings) -> tuple[Stabilisers, str]:
        """The stabilisers one more rollback turns on, from the settings in force now."""
        rb = self.settings.rollback
        lr_d_scale = self.stabilisers.lr_d_scale * rb.lr_d_factor
        noise, real_label = self.stabilisers.instance_noise, self.stabilisers.real_label
        changes = [f"lr_d={current.lr_d * rb.lr_d_factor:.3g}"]
        if rb.instance_noise > current.noise.std:
            noise = rb.instance_noise
            changes.append(f"instance_noise.std={rb.instance_noise:g}")
        if current.loss in ("bce", "lsgan") and rb.real_label < current.real_label:
            real_label = rb.real_label
            changes.append(f"real_label={rb.real_label:g}")
        return Stabilisers(lr_d_scale, noise, real_label), ", ".join(changes)

    def after_rollback(self, loop: LoopView, path: Path) -> None:
        """The loop reloaded `path` (this hook's state with it): count the rollback, turn the
        stabilisers on (the loop applies them through `adjust`), forget the detector's streaks. (A rollback another hook asked for
        leaves this hook as the checkpoint had it.)"""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        self.rollbacks = pending.rollbacks
        self.stabilisers = replace(pending.stabilisers, noise_start_step=loop.step)
        self.detector.reset()
        message = (f"rolled back to {path.name} (epoch {loop.epoch}, step {loop.step}) after "
                   f"{pending.verdict.signal} at step {pending.verdict.step}; now "
                   f"{pending.changes} (rollback {self.rollbacks} of "
                   f"{self.settings.rollback.max_rollbacks})")
        log.warning(message)
        loop.loggers.text("collapse", message, loop.step)

    def state_dict(self) -> dict[str, Any]:
        return {"detector": self.detector.state_dict(), "rollbacks": self.rollbacks,
                "stabilisers": asdict(self.stabilisers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "detector" in state:
            self.detector.load_state_dict(state["detector"])
        self.rollbacks = int(state.get("rollbacks", 0))
        self.stabilisers = Stabilisers(**state.get("stabilisers", {}))


def collapse_onset(verdict: Verdict) -> int:
    """The first step of the windows that made the verdict (a diversity verdict: its own
    step); the checkpoint rolled back to comes from before it."""
    if verdict.signal == "low_diversity" or verdict.onset is None:
        return verdict.step
    return verdict.onset
