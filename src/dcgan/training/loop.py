"""The loop: epochs of batches, metric windows, the progress bar, stop agreement across ranks.

It trains the GAN pair one batch at a time and calls the hooks at fixed points (see
dcgan.training.hooks.base); what they answer (go on, stop, roll back) it acts on here, in `act`. `fit`
returns an `Outcome` saying how the run ended; nothing leaves the loop as an exception but
errors (a non-finite loss, an unreadable file with dataset.on_bad_image=error).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dcgan.data.loader import batches_per_epoch, build_feed, release_workers
from dcgan.reporting.loggers import Loggers
from dcgan.runtime.distributed import (
    SINGLE,
    Distributed,
    any_rank,
    gather_objects,
    window_over_ranks,
)
from dcgan.runtime.process import StopSignals, capture_rng, restore_rng, seed_everything
from dcgan.training.hooks.base import Answer, Hook, Hooks, Interrupted, RollBack, Stop
from dcgan.training.hooks.saving import Checkpoints
from dcgan.training.pair import GANPair, NonFiniteLoss
from dcgan.training.settings import LoopSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How `fit` ended: finished, or stopped by a signal (`signum`) or a hook (`reason`); the
    state is in `checkpoint` then."""

    finished: bool
    signum: Optional[int] = None
    reason: Optional[str] = None
    checkpoint: Optional[Path] = None


class Trainer:
    """Owns the position in training (epoch, step, batch of the epoch) and the data order."""

    def __init__(self, settings: LoopSettings, gan: GANPair, dataset: Dataset,
                 checkpoints: Checkpoints, hooks: Sequence[Hook] = (),
                 loggers: Optional[Loggers] = None, layout: Distributed = SINGLE):
        self.settings, self.gan, self.dataset, self.layout = settings, gan, dataset, layout
        self.checkpoints = checkpoints  # also a hook, called last: it saves what the others did
        self.hooks = Hooks([*hooks, checkpoints])
        self.loggers = loggers or Loggers()
        self.base_settings = gan.settings  # as configured; hooks adjust it (see refresh_settings)
        self.device = gan.device
        self.loader, self.sampler = build_feed(dataset, settings, self.device, layout)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps (batches) completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained (mid-epoch stop)
        self.check_every = finite_check_every(self.device, settings.log_every)
        self.stop = StopSignals()  # replaced by fit()'s caller to honour Ctrl-C / SIGTERM
        self.last_metrics: dict[str, float] = {}  # the newest logged window, for summaries
        self.epoch_metrics: dict[str, float] = {}  # what hooks measured at this epoch's end
        self.step_metrics: dict[str, torch.Tensor] = {}  # the newest step's (device tensors)

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(len(self.dataset), self.settings.batch_size, self.layout.world_size)

    # -- the whole run -----------------------------------------------------------------------

    def fit(self) -> Outcome:
        """Train up to settings.epochs, or until a signal or a hook stops the run."""
        try:
            return self._fit()
        finally:  # the loader's worker processes go with the run, not at interpreter exit
            release_workers(self.loader)

    def _fit(self) -> Outcome:
        self.hooks.call("on_fit_start", self)
        self.refresh_settings()
        if self.epoch >= self.settings.epochs:
            log.info("already trained %d of epochs=%d; raise epochs to train more",
                     self.epoch, self.settings.epochs)
            return Outcome(finished=True)
        started = time.perf_counter()
        while self.epoch < self.settings.epochs:
            answer = self.train_epoch() or self.end_epoch()
            if answer is None:
                log.info("epoch %d/%d done (step %d)", self.epoch, self.settings.epochs, self.step)
                continue
            outcome = self.act(answer)
            if outcome is not None:
                return outcome
        self.hooks.call("on_fit_end", self)
        log.info("trained to epoch %d in %.1f s", self.epoch, time.perf_counter() - started)
        return Outcome(finished=True)

    def act(self, answer: Union[Answer, Interrupted]) -> Optional[Outcome]:
        """Carry out what a hook (or a signal) asked for; an Outcome when the run ends."""
        if isinstance(answer, RollBack):
            return self.roll_back(answer)
        self.hooks.call("on_stop", self, answer)  # the checkpoint hook saves last.pt
        path = self.checkpoints.last
        if isinstance(answer, Interrupted):
            return Outcome(finished=False, signum=answer.signum, checkpoint=path)
        return Outcome(finished=False, checkpoint=path, reason=(
            f"{answer.reason}; the state is in {path}; best.pt holds the best evaluated epoch"))

    def roll_back(self, answer: RollBack) -> Optional[Outcome]:
        """Reload the newest checkpoint from before `answer.onset` and tell the hooks."""
        found = self.checkpoints.newest_before(answer.onset)
        if found is None and answer.error is not None:
            raise answer.error
        if found is None:
            return self.act(Stop(f"{answer.reason}; no checkpoint from before step "
                                 f"{answer.onset} to roll back to, so stopped"))
        path, state = found
        self.load_state_dict(state)
        for hook in self.hooks[:-1]:
            hook.after_rollback(self, path)
        self.refresh_settings()  # with what the hooks turned on, before the checkpoint hook
        self.checkpoints.after_rollback(self, path)  # saves the new course's first last.pt
        return None

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(self) -> Union[Answer, Interrupted]:
        """Train the rest of the current epoch (all of it, unless resuming mid-epoch); what
        interrupted it, or None."""
        s = self.settings
        self.sampler.set_epoch(self.epoch, start_index=self.batch_in_epoch * s.batch_size)
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{s.epochs}",
                   initial=self.batch_in_epoch, total=self.batches_per_epoch, unit="batch",
                   dynamic_ncols=True, mininterval=1.0, disable=not self.layout.is_main)
        window = MetricWindow()
        with bar:
            for real, labels, bad_paths in bar:
                answer = self.train_batch(real, labels, bad_paths, window, bar)
                if answer is not None:
                    return answer
        self.epoch += 1
        self.batch_in_epoch = 0
        return None

    def train_batch(self, real: torch.Tensor, labels: Optional[torch.Tensor],
                    bad_paths: list[str], window: "MetricWindow", bar: tqdm
                    ) -> Union[Answer, Interrupted]:
        self.hooks.call("on_batch", self, bad_paths)
        if real.shape[0] >= 2:  # BatchNorm needs two images; fewer only if files were bad
            check_finite = (self.step + 1) % self.check_every == 0
            try:
                metrics = self.gan.train_step(real, self.step, check_finite, labels)
            except NonFiniteLoss as error:
                return self.on_non_finite(error)
            window.add(metrics, real.shape[0])
            self.step_metrics = metrics  # this step's own values, for after_step hooks
            self.step += 1
        self.batch_in_epoch += 1
        last_batch = self.batch_in_epoch == self.batches_per_epoch
        stopping = self.stop_agreed()
        if window.steps and (self.step % self.settings.log_every == 0 or last_batch or stopping):
            values = self.log_window(window.read_and_reset())
            bar.set_postfix(progress_text(values), refresh=False)
            answer = None if stopping else self.hooks.ask("after_window", self, values)
            if answer is not None:
                return answer
        if stopping:
            return Interrupted(self.stop.signum or signal.SIGTERM)
        self.hooks.call("after_step", self)
        return None

    def on_non_finite(self, error: NonFiniteLoss) -> Answer:
        """What a hook answers to a non-finite loss (e.g. roll back); with no answer the
        error ends the run."""
        error.step, error.epoch = self.step + 1, self.epoch + 1
        answer = self.hooks.ask("on_error", self, error)
        if answer is None:
            raise error
        return answer

    def end_epoch(self) -> Answer:
        self.epoch_metrics = {}
        return self.hooks.ask("on_epoch_end", self)

    def log_window(self, values: dict[str, float]) -> dict[str, float]:
        """Log a window's means (averaged over ranks under torchrun, so every rank sees the
        same numbers and the hooks decide the same everywhere)."""
        values = {**window_over_ranks(values, self.layout), **self.hooks.window_scalars(self)}
        self.last_metrics = values
        self.loggers.scalars(self.step, values)
        return values

    def stop_agreed(self) -> bool:
        """Whether to stop after this step: a signal here, or (under torchrun) on any rank;
        ranks compare on the steps where losses are checked, so all stop at the same step."""
        if not self.layout.enabled:
            return self.stop.requested
        if self.step % self.check_every:
            return False
        return any_rank(self.stop.requested, self.layout, self.device)

    # -- hooks -------------------------------------------------------------------------------

    def refresh_settings(self) -> None:  # the configured GAN settings with the hooks' changes
        settings = self.hooks.adjust(self.base_settings)
        if settings != self.gan.settings:
            self.gan.reconfigure(settings)

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The pair, the position, every RNG, and each hook's state under its name. Under
        torchrun every rank must call it (the RNG states of all ranks are gathered)."""
        return {
            **self.gan.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": capture_rng(),
            "rng_per_rank": gather_objects(capture_rng(), self.layout),
            "hooks": self.hooks.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` stopped, RNG included (call just before fit)."""
        self.gan.load_state_dict(state)
        self.hooks.load_state_dict(state.get("hooks", {}))
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        per_rank = state.get("rng_per_rank")
        if self.layout.enabled and per_rank and len(per_rank) == self.layout.world_size:
            restore_rng(per_rank[self.layout.rank])
        elif self.layout.enabled:
            # another world size: fresh, distinct noise streams per rank, still reproducible
            seed_everything(self.settings.seed + self.layout.rank + 7919 * self.step)
        else:
            restore_rng(state["rng"])


class MetricWindow:
    """Sums step metrics on the device; one host read per logging window.

    With d_steps > 1 not every step has a G loss, so each metric keeps its own count.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps, self.images = 0, 0
        self.started = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], n_images: int) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.steps += 1
        self.images += n_images

    def read_and_reset(self) -> dict[str, float]:
        keys = list(self.sums)
        sums = torch.stack([self.sums[key].float() for key in keys]).tolist()  # the one sync
        values = {key: total / self.counts[key] for key, total in zip(keys, sums)}
        values["img_per_s"] = self.images / max(time.perf_counter() - self.started, 1e-9)
        self.reset()
        return values


def finite_check_every(device: torch.device, log_every: int) -> int:
    """Steps between host reads of the losses (the non-finite check): a read waits for the
    device, so every step on the CPU (free there), once per metric window elsewhere."""
    return 1 if device.type == "cpu" else log_every


def progress_text(values: dict[str, float]) -> dict[str, str]:
    """Short labels for the tqdm postfix (a window without a G step has no G loss)."""
    labels = (("D", "loss_d", ".3f"), ("G", "loss_g", ".3f"), ("D(x)", "real_prob", ".2f"),
              ("D(G(z))", "fake_prob", ".2f"), ("p", "augment_p", ".3f"),
              ("rt", "real_sign", ".2f"), ("img/s", "img_per_s", ".0f"))
    return {label: format(values[key], spec) for label, key, spec in labels if key in values}
