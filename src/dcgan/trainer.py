"""The training loop: one D step and one G step per batch, epochs, samples, checkpoints."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from dcgan.checkpoint import (
    CHECKPOINT_DIR,
    GENERATOR_FILE,
    LAST,
    epoch_checkpoint_name,
    prune_numbered,
    remove_stale_temporaries,
    save_checkpoint,
    save_generator,
    step_checkpoint_name,
)
from dcgan.config import to_plain_dict
from dcgan.data import build_loader
from dcgan.errors import DCGANError
from dcgan.losses import discriminator_loss, generator_loss
from dcgan.models import Architecture, build_models
from dcgan.distributed import (
    SINGLE,
    Distributed,
    any_rank,
    barrier,
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


def architecture_from(cfg: DictConfig) -> Architecture:
    return Architecture(nz=cfg.model.nz, ngf=cfg.model.ngf, ndf=cfg.model.ndf,
                        channels=cfg.dataset.channels, image_size=cfg.dataset.image_size)


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
        self._build_forwards()
        self.opt_g = make_adam(self.generator, cfg, device)
        self.opt_d = make_adam(self.discriminator, cfg, device)
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
        for optimizer in (self.opt_g, self.opt_d):  # overrides such as lr=... take effect
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = self.cfg.lr, (self.cfg.beta1, self.cfg.beta2)
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

    # -- one batch ---------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step on real (target 1) and G(z) (target 0), then one G step (target 1).

        Returns detached scalar tensors; reading them is left to the caller so the step
        itself never waits for the device.
        """
        real = real.to(self.device, non_blocking=True, memory_format=self.memory_format)
        noise = torch.randn(real.shape[0], self.arch.nz, 1, 1, device=self.device)
        check_finite = (self.step + 1) % self.check_every == 0
        with self.autocast():
            fake = self.g_forward(noise)
            real_logits = self.d_forward(real)
            fake_logits = self.d_forward(fake.detach())
        loss_d, _, _ = discriminator_loss(real_logits, fake_logits)  # float32
        if check_finite:
            self._refuse_non_finite(loss_d, "discriminator loss (loss/d)")
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()

        # G step on the same fake batch; D is frozen so no gradient is spent on its weights
        self.discriminator.requires_grad_(False)
        with self.autocast():
            fake_logits_g = self.d_frozen_forward(fake)
        loss_g = generator_loss(fake_logits_g)
        if check_finite:
            self._refuse_non_finite(loss_g, "generator loss (loss/g)")
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.discriminator.requires_grad_(True)

        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "real_prob": torch.sigmoid(real_logits.detach().float()).mean(),
            "fake_prob": torch.sigmoid(fake_logits.detach().float()).mean(),
        }

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
        batches = len(self.loader) + self.batch_in_epoch  # this rank's batches in a whole epoch
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                   initial=self.batch_in_epoch, total=batches, unit="batch",
                   dynamic_ncols=True, mininterval=1.0, disable=not self.layout.is_main)
        window = _MetricWindow()
        for real, bad_paths in bar:
            self._note_bad_files(bad_paths)
            if real.shape[0] >= 2:  # BatchNorm needs two images; fewer only if files were bad
                window.add(self.train_step(real), real.shape[0])
                self.step += 1
            self.batch_in_epoch += 1
            last_batch = self.batch_in_epoch == batches
            stopping = self.stop_agreed()
            if window.steps and (self.step % self.cfg.log_every == 0 or last_batch or stopping):
                values = window.read_and_reset()
                self.last_metrics = values
                tracker.scalars(self.step, values)
                bar.set_postfix(progress_text(values), refresh=False)
            if self.cfg.ddp_check_every and self.step % self.cfg.ddp_check_every == 0:
                self.check_replicas()
            if stopping:
                bar.close()
                raise TrainingStopped(self.stop.signum or signal.SIGTERM, self.save())
            if self.cfg.ckpt_every_steps and self.step % self.cfg.ckpt_every_steps == 0:
                self.save(step_checkpoint_name(self.step))
        bar.close()
        self.epoch += 1
        self.batch_in_epoch = 0
        self._report_bad_files()

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

    @torch.no_grad()
    def fixed_samples(self) -> torch.Tensor:
        """G(fixed noise) in eval mode (BatchNorm running statistics), as [-1, 1] images."""
        was_training = self.generator.training
        self.generator.eval()
        images = self.generator(self.fixed_noise)
        self.generator.train(was_training)
        return images

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

    def save(self, *numbered: str) -> Path:
        """Write last.pt (and the numbered names given), the shareable generator, then prune.

        Every rank calls it (the RNG states of all ranks go into the checkpoint); rank 0 writes.
        """
        folder = self.checkpoint_dir
        state = self.state_dict()
        if self.layout.is_main:
            save_checkpoint(state, [*(folder / name for name in numbered), folder / LAST])
            save_generator(self.generator.state_dict(), self.arch.as_dict(),
                           folder / GENERATOR_FILE, epoch=self.epoch, step=self.step)
            prune_numbered(folder, self.cfg.keep_last)
        barrier(self.layout)
        return folder / LAST

    def end_of_epoch(self, tracker: Tracker) -> None:
        if self.layout.is_main:
            grid = image_grid(self.fixed_samples(), nrow=4)
            tracker.grid("samples/fixed", grid, self.step)
            save_png(grid, self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png")
        self.save(epoch_checkpoint_name(self.epoch))

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
            self.train_epoch(tracker)
            self.end_of_epoch(tracker)
            log.info("epoch %d/%d done (step %d)", self.epoch, self.cfg.epochs, self.step)
        log.info("trained to epoch %d in %.1f s", self.epoch, time.perf_counter() - started)


def make_adam(module: torch.nn.Module, cfg: DictConfig, device: torch.device
              ) -> torch.optim.Adam:
    """Adam with the paper's settings, in the fastest implementation the device has."""
    impl = str(cfg.adam.value)
    if impl == "auto":
        impl = "fused" if device.type in ("cpu", "cuda") else "foreach"
    options = {"fused": {"fused": True}, "foreach": {"foreach": True},
               "for_loop": {"foreach": False, "fused": False}}[impl]
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
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
    """Sums step metrics on the device; one host read per logging window."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: Optional[torch.Tensor] = None
        self.steps, self.images = 0, 0
        self.started = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], n_images: int) -> None:
        stacked = torch.stack([metrics[key] for key in _WINDOW_KEYS])
        self.sums = stacked if self.sums is None else self.sums + stacked
        self.steps += 1
        self.images += n_images

    def read_and_reset(self) -> dict[str, float]:
        means = (self.sums / max(self.steps, 1)).tolist()  # the one device->host sync
        values = dict(zip(_WINDOW_KEYS, means))
        values["img_per_s"] = self.images / max(time.perf_counter() - self.started, 1e-9)
        self.reset()
        return values


_WINDOW_KEYS = ("loss_d", "loss_g", "real_prob", "fake_prob")


def _describe(arch: Architecture) -> str:
    return (f"nz={arch.nz} ngf={arch.ngf} ndf={arch.ndf} channels={arch.channels} "
            f"image_size={arch.image_size}")
