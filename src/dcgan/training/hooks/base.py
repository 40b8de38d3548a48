"""The hook interface and what a hook may answer.

The loop calls every hook at the same points, in the order it was given them:

  on_fit_start(loop)            once, after any resume, before the first step
  on_batch(loop, bad_paths)     each batch, with the files of it that could not be read
  after_step(loop)              after each optimiser step (not on a step a signal stops at)
  window_scalars(loop)          as each window is logged: the hook's own values to log with it
  after_window(loop, values)    after each logged window of step metrics (means)
  on_epoch_end(loop)            after each epoch (loop.epoch counts it already)
  after_rollback(loop, path)    after the loop reloaded `path` because of a RollBack answer
  on_stop(loop, answer)         the run ends early: a Stop answer or an Interrupted signal
  on_error(loop, error)         a step raised NonFiniteLoss; a hook may answer RollBack,
                                else the error goes on up and ends the run
  on_fit_end(loop)              the run reached its last epoch

`after_window`, `on_epoch_end` and `on_error` may answer: None (go on), `Stop` or `RollBack`.
A hook that changes how the pair trains from some point on (lower learning rates, more noise)
keeps that as its own state and says so in `adjust(settings)`: the loop passes the configured
GAN settings through every hook's `adjust` at the start and after each rollback. The loop asks
every hook before it acts, so at an epoch's end the checkpoint hook still saves the epoch that
made the collapse guard answer. A hook reads the loop (its position, the GAN pair, the loggers,
`epoch_metrics`) and changes only itself and what its own concept owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Union

import torch
from torch.utils.data import Dataset

from dcgan.reporting.loggers import Loggers
from dcgan.training.pair import GANPair
from dcgan.training.settings import GANSettings, LoopSettings


class LoopView(Protocol):
    """What a hook may read of the loop (training/loop.py's Trainer is one). A hook changes
    only itself and what its own concept owns; the two calls at the end are the only ways it
    acts on the loop."""

    settings: LoopSettings  # epochs, batch size, log window, seed
    base_settings: GANSettings  # the pair's settings as configured, before any hook's adjust
    gan: GANPair  # the networks, their optimisers and the sampling generator
    dataset: Dataset
    device: torch.device
    loggers: Loggers
    hooks: "Hooks"
    epoch: int  # epochs finished
    step: int  # optimiser steps taken
    step_metrics: dict[str, torch.Tensor]  # the newest step's values (device tensors)
    epoch_metrics: dict[str, float]  # what hooks measured at this epoch's end (hooks add to it)

    def refresh_settings(self) -> None:
        """Apply every hook's `adjust` to the configured settings, now."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds of the run."""


@dataclass(frozen=True)
class Stop:
    """End the run now (state saved): `reason` is the one line the user reads."""

    reason: str


@dataclass(frozen=True)
class RollBack:
    """Reload the newest checkpoint from before step `onset` and go on from there. With none
    to reload, the run stops: with `error` raised (as if nobody had answered), else saved."""

    onset: int
    reason: str
    error: Optional[Exception] = None


@dataclass(frozen=True)
class Interrupted:
    """A stop signal (Ctrl-C, SIGTERM) agreed by every rank: save and leave, resumable."""

    signum: int


Answer = Optional[Union[Stop, RollBack]]


class Hook:
    """Does nothing at every point; a hook overrides the points it acts at."""

    name = "hook"  # the key of its state in the checkpoint

    def on_fit_start(self, loop: LoopView) -> None:
        pass

    def on_batch(self, loop: LoopView, bad_paths: list[str]) -> None:
        pass

    def after_step(self, loop: LoopView) -> None:
        pass

    def window_scalars(self, loop: LoopView) -> dict[str, float]:
        return {}

    def after_window(self, loop: LoopView, values: dict[str, float]) -> Answer:
        return None

    def on_epoch_end(self, loop: LoopView) -> Answer:
        return None

    def after_rollback(self, loop: LoopView, path: Path) -> None:
        pass

    def on_stop(self, loop: LoopView, answer: Union[Stop, Interrupted]) -> None:
        pass

    def on_error(self, loop: LoopView, error: Exception) -> Answer:
        return None

    def adjust(self, settings: GANSettings) -> GANSettings:
        return settings

    def on_fit_end(self, loop: LoopView) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Hooks(list):
    """A run's hooks in calling order, and the ways the loop calls them."""

    def call(self, point: str, loop: LoopView, *args: Any) -> None:
        for hook in self:
            getattr(hook, point)(loop, *args)

    def ask(self, point: str, loop: LoopView, *args: Any) -> Answer:
        """Every hook is called; the first answer that is not None wins."""
        answers = [getattr(hook, point)(loop, *args) for hook in self]
        return next((answer for answer in answers if answer is not None), None)

    def adjust(self, settings: GANSettings) -> GANSettings:
        for hook in self:
            settings = hook.adjust(settings)
        return settings

    def window_scalars(self, loop: LoopView) -> dict[str, float]:
        return {name: value for hook in self for name, value in hook.window_scalars(loop).items()}

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {hook.name: hook.state_dict() for hook in self}

    def load_state_dict(self, states: dict[str, dict[str, Any]]) -> None:
        for hook in self:
            hook.load_state_dict(states.get(hook.name, {}))
