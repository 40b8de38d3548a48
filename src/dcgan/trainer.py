"""The training loop: one D step and one G step per batch, epochs, samples, checkpoints."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from dcgan.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    GENERATOR_FILE,
    LAST,
    newest_before,
    epoch_checkpoint_name,
    prune_numbered,
    remove_stale_temporaries,
    save_checkpoint,
    save_generator,
    set_aside_after,
    step_checkpoint_name,
)
from dcgan.config import to_plain_dict
from dcgan.data import build_loader
from dcgan.errors import DCGANError
from dcgan.augment import annealed_std, diff_augment, instance_noise
from dcgan.collapse import CollapseDetector, CollapseSettings, Verdict
from dcgan.ema import EMA
from dcgan.evaluation import Evaluator
from dcgan.losses import discriminator_loss, generator_loss, gradient_penalty, label_flip_mask
from dcgan.models import Architecture, build_models, in_mode
from dcgan.distributed import (
    SINGLE,
    Distributed,
    any_rank,
    barrier,
    broadcast_object,
    gather_objects,
    weights_digest,
)
from dcgan.runtime import StopSignals, capture_rng, restore_rng, seed_everything
from dcgan.tracking import Tracker, image_grid, progress_text, save_png

log = logging.getLogger(__name__)

N_FIXED_SAMPLES = 16  # the 4x4 grid logged every epoch


class TrainingStopped(Exception):
    """A stop signal was honoured: the state is in `checkpoint`, training can resume."""

    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(f"stopped by signal {signum}")
        self.signum, self.checkpoint = signum, checkpoint


class NonFiniteLoss(DCGANError):
    """A loss became NaN or Inf; the state before that update was saved for inspection."""

    exit_code = 3


class CollapseStop(DCGANError):
    """collapse.policy=stop (or rollback with none left): the run was checkpointed and ended."""

    exit_code = 4


class _RollBack(Exception):
    """Raised inside an epoch to leave it; fit() reloads the last healthy checkpoint."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


def architecture_from(cfg: DictConfig) -> Architecture:
    d_batchnorm = cfg.model.d_batchnorm
    if d_batchnorm is None:  # WGAN-GP's penalty is per image; BatchNorm mixes images
        d_batchnorm = str(cfg.loss.value) != "wgan_gp"
    return Architecture(nz=cfg.model.nz, ngf=cfg.model.ngf, ndf=cfg.model.ndf,
                        channels=cfg.dataset.channels, image_size=cfg.dataset.image_size,
                        d_batchnorm=d_batchnorm, d_spectral_norm=cfg.model.spectral_norm)


def collapse_settings(cfg: DictConfig) -> CollapseSettings:
    """The detector's thresholds, read from the config group of the same field names."""
    return CollapseSettings(**{f.name: cfg.collapse[f.name] for f in fields(CollapseSettings)})


class Trainer:
    """Owns the networks, their optimisers and the position in training (epoch, step)."""

    def __init__(self, cfg: DictConfig, dataset: Dataset, run_dir: Path, device: torch.device,
                 layout: Distributed = SINGLE):
        self.cfg, self.dataset, self.run_dir, self.device = cfg, dataset, run_dir, device
        self.layout = layout
        self.arch = architecture_from(cfg)
        # channels_last makes the convolutions ~40% faster on CPU and suits tensor cores
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        generator, discriminator = build_models(self.arch)
        if layout.enabled and cfg.model.sync_bn:
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        self.generator = generator.to(device, memory_format=self.memory_format)
        self.discriminator = discriminator.to(device, memory_format=self.memory_format)
        if cfg.compile:
            keep_first_weight_contiguous(self.generator)
        self._build_forwards()
        self.opt_g = make_adam(self.generator, cfg, device, learning_rate(cfg, "g"))
        self.opt_d = make_adam(self.discriminator, cfg, device, learning_rate(cfg, "d"))
        # the moving average of G (ema.decay > 0) is what samples and evaluation use
        self.ema = EMA(self.generator, cfg.ema.decay, cfg.ema.start_step) if cfg.ema.decay else None
        self.autocast_dtype = autocast_dtype(str(cfg.precision.value), device)
        # fp16 needs loss scaling; one scaler per network since their steps are separate
        use_scaler = self.autocast_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.fixed_noise = torch.randn(N_FIXED_SAMPLES, self.arch.nz, 1, 1).to(device)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps (batches) completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained (mid-epoch stop)
        # Reading a loss on the host waits for the device: free on the CPU, so check every
        # step there; on accelerators check only on the logged steps.
        self.check_every = 1 if device.type == "cpu" else cfg.log_every
        self.stop = StopSignals()  # replaced by fit()'s caller to honour Ctrl-C / SIGTERM
        self.checkpoint_dir = run_dir / CHECKPOINT_DIR
        self.loader, self.sampler = build_loader(
            dataset, cfg.batch_size, cfg.seed, cfg.num_workers, pin_memory=device.type == "cuda",
            num_replicas=layout.world_size, rank=layout.rank)
        self.skipped_files: list[str] = []
        self.last_metrics: dict[str, float] = {}  # the newest logged window, for summaries
        self.evaluator: Optional[Evaluator] = None  # built on first use (reads real images)
        self.eval_metrics: dict[str, float] = {}  # the newest evaluation
        self.best_value = float("inf")  # of cfg.eval.select, for checkpoints/best.pt
        self.watching = str(cfg.collapse.policy.value) != "off"
        self.detector = CollapseDetector(collapse_settings(cfg))
        self.rollbacks = 0
        self.noise_start_step = 0  # instance noise anneals from here (moved by a rollback)

    def _build_forwards(self) -> None:
        """What the step calls: the modules, compiled if asked, and DDP-wrapped under torchrun.

        The G step calls D's plain module: D is frozen there, and DistributedDataParallel
        would otherwise wait for D gradients that never come.
        """
        g_forward, d_forward = self.generator, self.discriminator
        if self.layout.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            g_forward = DistributedDataParallel(self.generator, device_ids=device_ids)
            d_forward = DistributedDataParallel(self.discriminator, device_ids=device_ids)
        compile_ = torch.compile if self.cfg.compile else (lambda module: module)
        self.g_forward, self.d_forward = compile_(g_forward), compile_(d_forward)
        self.d_frozen_forward = compile_(self.discriminator) if self.layout.enabled else self.d_forward

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "fixed_noise": self.fixed_noise.cpu(),
            "rng": capture_rng(),
            "rng_per_rank": gather_objects(capture_rng(), self.layout),
            "config": to_plain_dict(self.cfg),
            "arch": self.arch.as_dict(),
            **({"generator_ema": self.ema.state_dict()} if self.ema else {}),
            "eval_metrics": dict(self.eval_metrics),
            "best_value": self.best_value,
            "collapse": {"detector": self.detector.state_dict(), "rollbacks": self.rollbacks,
                         "noise_start_step": self.noise_start_step},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` stopped, RNG included (call just before fit)."""
        saved = Architecture(**state["arch"])
        if saved != self.arch:
            raise DCGANError(f"the checkpoint's networks ({_describe(saved)}) do not match the "
                             f"config ({_describe(self.arch)})")
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if self.scaler_g.is_enabled() and state.get("scaler_g"):
                self.scaler_g.load_state_dict(state["scaler_g"])
                self.scaler_d.load_state_dict(state["scaler_d"])
        except (RuntimeError, ValueError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise DCGANError(f"its weights do not fit {_describe(self.arch)} ({first_line})"
                             ) from error
        self.set_learning_rates()  # overrides such as lr=... take effect
        if self.ema is not None:
            if "generator_ema" in state:
                self.ema.load_state_dict(state["generator_ema"])
            else:  # EMA turned on when resuming: start the average from the live weights
                self.ema.update(self.generator, 0)
        self.eval_metrics = dict(state.get("eval_metrics", {}))
        self.best_value = float(state.get("best_value", float("inf")))
        collapse = state.get("collapse", {})
        if "detector" in collapse:
            self.detector.load_state_dict(collapse["detector"])
        self.rollbacks = int(collapse.get("rollbacks", 0))
        self.noise_start_step = int(collapse.get("noise_start_step", 0))
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self.fixed_noise = state["fixed_noise"].to(self.device)
        per_rank = state.get("rng_per_rank")
        if self.layout.enabled and per_rank and len(per_rank) == self.layout.world_size:
            restore_rng(per_rank[self.layout.rank])
        elif self.layout.enabled:
            # another world size: fresh, distinct noise streams per rank, still reproducible
            seed_everything(self.cfg.seed + self.layout.rank + 7919 * self.step)
        else:
            restore_rng(state["rng"])

    def set_learning_rates(self) -> None:
        for optimizer, network in ((self.opt_g, "g"), (self.opt_d, "d")):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(self.cfg, network)
                group["betas"] = (self.cfg.beta1, self.cfg.beta2)

    # -- one batch ---------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step on real (target 1) and G(z) (target 0), then one G step (target 1) on
        the same fake batch; with d_steps=k the G step comes on every k-th batch only.

        Returns detached scalar tensors; reading them is left to the caller so the step
        itself never waits for the device.
        """
        real = real.to(self.device, non_blocking=True, memory_format=self.memory_format)
        noise = torch.randn(real.shape[0], self.arch.nz, 1, 1, device=self.device)
        check_finite = (self.step + 1) % self.check_every == 0
        g_step = (self.step + 1) % self.cfg.d_steps == 0
        with self.autocast(), torch.set_grad_enabled(g_step):
            fake = self.g_forward(noise)
        metrics = self.discriminator_step(real, fake.detach(), check_finite)
        if g_step:
            metrics["loss_g"] = self.generator_step(fake, check_finite)
            if self.ema is not None:
                self.ema.update(self.generator, self.step + 1)
        return metrics

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, check_finite: bool
                           ) -> dict[str, torch.Tensor]:
        real_seen, fake_seen = self.what_d_sees(real), self.what_d_sees(fake)
        with self.autocast():
            real_logits = self.d_forward(real_seen)
            fake_logits = self.d_forward(fake_seen)
        # one coin per image, real ones first then fake ones: heads swaps its label
        flip = (label_flip_mask(2 * real.shape[0], self.cfg.label_flip, device=self.device)
                if self.cfg.label_flip else None)
        loss_d, _, _ = discriminator_loss(real_logits, fake_logits, kind=self.loss_kind,
                                          real_label=self.cfg.real_label, flip=flip)  # float32
        if self.loss_kind == "wgan_gp":
            loss_d = loss_d + gradient_penalty(self.discriminator, real_seen, fake_seen,
                                               weight=self.cfg.gp_weight)
        if check_finite:
            self._refuse_non_finite(loss_d, "discriminator loss (loss/d)")
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return {
            "loss_d": loss_d.detach(),
            "real_prob": torch.sigmoid(real_logits.detach().float()).mean(),
            "fake_prob": torch.sigmoid(fake_logits.detach().float()).mean(),
        }

    def generator_step(self, fake: torch.Tensor, check_finite: bool) -> torch.Tensor:
        # D is frozen so no gradient is spent on its weights
        self.discriminator.requires_grad_(False)
        with self.autocast():
            fake_logits = self.d_frozen_forward(self.what_d_sees(fake))
        loss_g = generator_loss(fake_logits, kind=self.loss_kind)
        if check_finite:
            self._refuse_non_finite(loss_g, "generator loss (loss/g)")
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.discriminator.requires_grad_(True)
        return loss_g.detach()

    def what_d_sees(self, images: torch.Tensor) -> torch.Tensor:
        """DiffAugment and instance noise, as configured (both differentiable, both off by
        default); the same for real and fake images and in the G step."""
        if self.cfg.augment:
            images = diff_augment(images, ",".join(self.cfg.augment))
        std = self.instance_noise_std()
        if std > 0:
            images = instance_noise(images, std)
        return images

    def instance_noise_std(self) -> float:
        noise = self.cfg.instance_noise
        if noise.std <= 0:
            return 0.0
        steps_per_epoch = self.batches_per_epoch
        # null anneal_epochs: to zero at the end of the run (of what is left after a rollback)
        epochs = noise.anneal_epochs or max(self.cfg.epochs - self.noise_start_step / steps_per_epoch, 1)
        progress = (self.step - self.noise_start_step) / (epochs * steps_per_epoch)
        return annealed_std(noise.std, min(max(progress, 0.0), 1.0))

    @property
    def batches_per_epoch(self) -> int:
        """This rank's batches in a whole epoch (the loader drops the last partial batch)."""
        return max(self.sampler.num_samples // self.cfg.batch_size, 1)

    @property
    def loss_kind(self) -> str:
        return str(self.cfg.loss.value)

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def _refuse_non_finite(self, loss: torch.Tensor, which: str) -> None:
        if torch.isfinite(loss).item():
            return
        step = self.step + 1
        path = self.checkpoint_dir / f"nonfinite_step_{step}.pt"
        save_checkpoint(self.state_dict(), [path])  # the state before this update
        raise NonFiniteLoss(
            f"the {which} became {loss.item()} at step {step} (epoch {self.epoch + 1}); "
            f"the state before it is in {path} and the last good checkpoint is untouched; "
            "try a lower lr, or resume from the last checkpoint")

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(self, tracker: Tracker) -> None:
        """Train the rest of the current epoch (all of it, unless resuming mid-epoch)."""
        self.sampler.set_epoch(self.epoch, start_index=self.batch_in_epoch * self.cfg.batch_size)
        batches = self.batches_per_epoch
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                   initial=self.batch_in_epoch, total=batches, unit="batch",
                   dynamic_ncols=True, mininterval=1.0, disable=not self.layout.is_main)
        window = _MetricWindow()
        with bar:
            for real, bad_paths in bar:
                self._note_bad_files(bad_paths)
                if real.shape[0] >= 2:  # BatchNorm needs two images; fewer only if files were bad
                    window.add(self.train_step(real), real.shape[0])
                    self.step += 1
                self.batch_in_epoch += 1
                last_batch = self.batch_in_epoch == batches
                stopping = self.stop_agreed()
                if window.steps and (self.step % self.cfg.log_every == 0 or last_batch or stopping):
                    values = self.log_window(window.read_and_reset(), tracker)
                    bar.set_postfix(progress_text(values), refresh=False)
                    if not stopping:
                        self.watch(self.detector_verdict(values), tracker)
                if self.cfg.ddp_check_every and self.step % self.cfg.ddp_check_every == 0:
                    self.check_replicas()
                if stopping:
                    bar.close()
                    raise TrainingStopped(self.stop.signum or signal.SIGTERM, self.save())
                if self.cfg.ckpt_every_steps and self.step % self.cfg.ckpt_every_steps == 0:
                    self.save(step_checkpoint_name(self.step))
        self.epoch += 1
        self.batch_in_epoch = 0
        self._report_bad_files()

    def log_window(self, values: dict[str, float], tracker: Tracker) -> dict[str, float]:
        """Log a window's means (averaged over ranks under torchrun, so every rank sees the
        same numbers and the detector decides the same everywhere)."""
        if self.layout.enabled:
            every_rank = gather_objects(values, self.layout)
            values = {key: sum(v[key] for v in every_rank) / len(every_rank) for key in values
                      if all(key in v for v in every_rank)}
            values["img_per_s"] = values.get("img_per_s", 0.0) * self.layout.world_size
        self.last_metrics = values
        tracker.scalars(self.step, values)
        return values

    def stop_agreed(self) -> bool:
        """Whether to stop after this step: a signal here, or (under torchrun) on any rank.

        Ranks compare on the steps where losses are checked, so they all stop at the same step.
        """
        if not self.layout.enabled:
            return self.stop.requested
        if self.step % self.check_every:
            return False
        return any_rank(self.stop.requested, self.layout, self.device)

    def check_replicas(self) -> None:
        """Every rank must hold the same weights (DistributedDataParallel's promise)."""
        digests = gather_objects(
            (weights_digest(self.generator), weights_digest(self.discriminator)), self.layout)
        if any(digest != digests[0] for digest in digests):
            raise DCGANError(f"ranks disagree on the weights after step {self.step}")
        log.info("step %d: weights identical on all %d ranks", self.step, self.layout.world_size)

    def _note_bad_files(self, bad_paths: list[str]) -> None:
        if not bad_paths:
            return
        if self.cfg.dataset.on_bad_image == "error":
            raise DCGANError(f"cannot read image {bad_paths[0]} (dataset.on_bad_image=error; "
                             "use skip to train without it)")
        self.skipped_files.extend(bad_paths)

    def _report_bad_files(self) -> None:
        if self.skipped_files:
            log.warning("skipped %d unreadable image(s) this epoch, e.g. %s",
                        len(self.skipped_files), self.skipped_files[0])
            self.skipped_files = []

    # -- samples and checkpoints -------------------------------------------------------------

    @property
    def sampling_generator(self) -> nn.Module:
        """What samples and evaluations use: the moving average of G when ema.decay > 0."""
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def fixed_samples(self) -> torch.Tensor:
        """G(fixed noise) in eval mode (BatchNorm running statistics), as [-1, 1] images."""
        with in_mode(self.sampling_generator, training=False) as generator:
            return generator(self.fixed_noise)

    def log_real_grid(self, tracker: Tracker) -> None:
        reals = []
        for index in range(min(len(self.dataset), 4 * N_FIXED_SAMPLES)):
            item = self.dataset[index]
            if isinstance(item, torch.Tensor):
                reals.append(item)
            if len(reals) == N_FIXED_SAMPLES:
                break
        if reals:
            tracker.grid("samples/real", image_grid(torch.stack(reals), nrow=4), self.step)

    def save(self, *numbered: str, best: bool = False) -> Path:
        """Write last.pt (and the numbered names given, and best.pt when `best`), the
        shareable generator (the EMA one when on), then prune old numbered checkpoints.

        Every rank calls it (the RNG states of all ranks go into the checkpoint); rank 0 writes.
        """
        folder = self.checkpoint_dir
        state = self.state_dict()
        if self.layout.is_main:
            names = [*numbered, LAST, *([BEST] if best else [])]
            save_checkpoint(state, [folder / name for name in names])
            save_generator(self.sampling_generator.state_dict(), self.arch.as_dict(),
                           folder / GENERATOR_FILE, epoch=self.epoch, step=self.step)
            prune_numbered(folder, self.cfg.keep_last)
        barrier(self.layout)
        return folder / LAST

    def end_of_epoch(self, tracker: Tracker) -> None:
        """Samples, the evaluation when due, the epoch checkpoint (and best.pt), then the
        collapse detector's view of the evaluation."""
        if self.layout.is_main:
            grid = image_grid(self.fixed_samples(), nrow=4)
            tracker.grid("samples/fixed", grid, self.step)
            save_png(grid, self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png")
        improved, verdict = False, None
        if self.evaluation_due():
            self.eval_metrics = self.evaluate(tracker)
            value = self.eval_metrics[self.cfg.eval.select]
            improved = value < self.best_value
            self.best_value = min(value, self.best_value)
            if "diversity" in self.eval_metrics:
                verdict = self.detector.observe_diversity(self.step, self.eval_metrics["diversity"])
        self.save(epoch_checkpoint_name(self.epoch), best=improved)
        self.watch(verdict, tracker)

    # -- quality -----------------------------------------------------------------------------

    def evaluation_due(self) -> bool:
        every = self.cfg.eval.every
        return every > 0 and (self.epoch % every == 0 or self.epoch >= self.cfg.epochs)

    def evaluate(self, tracker: Tracker) -> dict[str, float]:
        """The metrics of the sampling generator; computed on rank 0, known to every rank."""
        metrics: dict[str, float] = {}
        if self.layout.is_main:
            if self.evaluator is None:
                ev = self.cfg.eval
                self.evaluator = Evaluator(self.dataset, ev.n_samples, self.arch.nz, ev.seed,
                                           self.device, ev.fid, ev.inception_weights)
            started = time.perf_counter()
            metrics = self.evaluator(self.sampling_generator)
            tracker.scalars(self.step, {f"metrics/{key}": value for key, value in metrics.items()})
            log.info("epoch %d evaluation (%.1f s): %s", self.epoch, time.perf_counter() - started,
                     ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))
        return broadcast_object(metrics, self.layout)

    # -- collapse ----------------------------------------------------------------------------

    def detector_verdict(self, values: dict[str, float]) -> Optional[Verdict]:
        """Feed a log window to the detector. The loss and probability rules are written for
        the paper's BCE objective; with other losses only the diversity rule watches."""
        if not self.watching or self.loss_kind != "bce" or "loss_g" not in values:
            return None
        return self.detector.observe(self.step, values["loss_d"], values["loss_g"],
                                     values["real_prob"], values["fake_prob"])

    def watch(self, verdict: Optional[Verdict], tracker: Tracker) -> None:
        """Say so, then act as collapse.policy says: warn, stop, or roll back."""
        if verdict is None or not self.watching:
            return
        policy = str(self.cfg.collapse.policy.value)
        log.warning("collapse detected: %s", verdict.message)
        tracker.text("collapse", f"step {verdict.step}: {verdict.message} "
                     f"(collapse.policy={policy})", self.step)
        if policy == "warn":
            return
        if policy == "rollback" and self.rollbacks < self.cfg.collapse.rollback.max_rollbacks:
            raise _RollBack(verdict)
        path = self.save()
        why = ("" if policy == "stop" else
               f" after {self.rollbacks} rollback(s) (collapse.rollback.max_rollbacks)")
        raise CollapseStop(f"stopped at step {self.step}{why}: {verdict.message}; the state is "
                           f"in {path}; best.pt holds the best evaluated epoch")

    def roll_back(self, verdict: Verdict, tracker: Tracker) -> None:
        """Reload the newest checkpoint from before the collapse began, turn on the
        stabilisers collapse.rollback names, and set the abandoned checkpoints aside."""
        onset = self.collapse_onset(verdict)
        found = newest_before(self.checkpoint_dir, onset)
        if found is None:
            path = self.save()
            raise CollapseStop(f"{verdict.message}; no checkpoint from before step {onset} to "
                               f"roll back to, so stopped; the state is in {path}")
        path, state = found
        rollbacks = self.rollbacks + 1
        self.load_state_dict(state)
        self.rollbacks = rollbacks
        changes = self.turn_on_stabilisers()
        self.noise_start_step = self.step
        self.detector.reset()
        if self.layout.is_main:
            set_aside_after(self.checkpoint_dir, self.step)
        message = (f"rolled back to {path.name} (epoch {self.epoch}, step {self.step}) after "
                   f"{verdict.signal} at step {verdict.step}; now {changes} "
                   f"(rollback {rollbacks} of {self.cfg.collapse.rollback.max_rollbacks})")
        log.warning(message)
        tracker.text("collapse", message, self.step)
        self.save()  # last.pt: a crash from here resumes on the new course, stabilisers on

    def collapse_onset(self, verdict: Verdict) -> int:
        """The first step of the windows that made the verdict (a diversity verdict: its own
        step); the checkpoint rolled back to comes from before it."""
        if verdict.signal == "low_diversity" or verdict.onset is None:
            return verdict.step
        return verdict.onset

    def turn_on_stabilisers(self) -> str:
        """Apply collapse.rollback to the live config (saved with every later checkpoint)."""
        rb, cfg = self.cfg.collapse.rollback, self.cfg
        cfg.lr_d = learning_rate(cfg, "d") * rb.lr_d_factor
        changes = [f"lr_d={cfg.lr_d:.3g}"]
        if rb.instance_noise > cfg.instance_noise.std:
            cfg.instance_noise.std, cfg.instance_noise.anneal_epochs = rb.instance_noise, None
            changes.append(f"instance_noise.std={rb.instance_noise:g}")
        if self.loss_kind in ("bce", "lsgan") and rb.real_label < cfg.real_label:
            cfg.real_label = rb.real_label
            changes.append(f"real_label={rb.real_label:g}")
        self.set_learning_rates()
        return ", ".join(changes)

    # -- the whole run -----------------------------------------------------------------------

    def fit(self, tracker: Tracker) -> None:
        """Train up to cfg.epochs. Raises TrainingStopped when `self.stop` asks for it."""
        if self.checkpoint_dir.is_dir():
            remove_stale_temporaries(self.checkpoint_dir)
        if self.epoch >= self.cfg.epochs:
            log.info("already trained %d of epochs=%d; raise epochs to train more",
                     self.epoch, self.cfg.epochs)
            return
        if self.step == 0 and self.layout.is_main:
            self.log_real_grid(tracker)
        started = time.perf_counter()
        while self.epoch < self.cfg.epochs:
            try:
                self.train_epoch(tracker)
                self.end_of_epoch(tracker)
            except _RollBack as rollback:
                self.roll_back(rollback.verdict, tracker)
                continue
            log.info("epoch %d/%d done (step %d)", self.epoch, self.cfg.epochs, self.step)
        log.info("trained to epoch %d in %.1f s", self.epoch, time.perf_counter() - started)


def keep_first_weight_contiguous(generator: nn.Module) -> None:
    """For torch.compile on CUDA: with G's first ConvTranspose weight (its input is 1x1) in
    channels_last, the compiled backward fails (torch 2.11: inductor expects a channels_last
    weight gradient, cuDNN returns a contiguous one). That layer is under 1% of the FLOPs."""
    first = generator.main[0]
    first.weight.data = first.weight.data.contiguous()


def learning_rate(cfg: DictConfig, network: str) -> float:
    """lr_g / lr_d when set (two time-scale updates), else lr."""
    specific = cfg.lr_g if network == "g" else cfg.lr_d
    return float(specific if specific is not None else cfg.lr)


def make_adam(module: torch.nn.Module, cfg: DictConfig, device: torch.device, lr: float
              ) -> torch.optim.Adam:
    """Adam with the paper's settings, in the fastest implementation the device has."""
    impl = str(cfg.adam.value)
    if impl == "auto":
        impl = "fused" if device.type in ("cpu", "cuda") else "foreach"
    options = {"fused": {"fused": True}, "foreach": {"foreach": True},
               "for_loop": {"foreach": False, "fused": False}}[impl]
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2),
                            **options)


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `precision`, or None for plain float32.

    auto is bf16 on CUDA GPUs that support it and fp32 elsewhere: bf16 autocast on a CPU
    without AVX-512 BF16 is many times slower than fp32.
    """
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if precision == "fp16" and device.type == "cpu":
        raise DCGANError("precision=fp16 is for GPUs; use fp32 (or bf16) on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class _MetricWindow:
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


def _describe(arch: Architecture) -> str:
    extras = ("" if arch.d_batchnorm else " no D BatchNorm") + (
        " D spectral norm" if arch.d_spectral_norm else "")
    return (f"nz={arch.nz} ngf={arch.ngf} ndf={arch.ndf} channels={arch.channels} "
            f"image_size={arch.image_size}{extras}")
