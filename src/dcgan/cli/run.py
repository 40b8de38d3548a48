"""One training run put together: the checkpoint to resume, the config checked and resolved into
typed settings, the data set, the GAN pair, the hooks, the loggers and the loop; then `fit`,
and what its outcome means for the user (files, messages, exit codes).

`build_trainer` is also how the tests and the benchmark make a trainer from a composed config.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from dcgan.config import apply_resume_overrides, resolve, to_plain_dict, validate
from dcgan.data.datasets import build_dataset
from dcgan.data.labels import labels_of
from dcgan.data.loader import batches_per_epoch
from dcgan.errors import DCGANError
from dcgan.nets.conditioning import FakeLabels, LabelSpace, fake_labels_from_data
from dcgan.quality.evaluator import classifier_cache_path, feature_cache_path
from dcgan.quality.metrics import inception_weights_path
from dcgan.reporting.loggers import Loggers
from dcgan.reporting.loggers.csv import CSVLogger
from dcgan.reporting.loggers.tensorboard import TensorBoardLogger
from dcgan.reporting.page import REPORT_FILE, write_report
from dcgan.reporting.sweeps import SUMMARY_FILE
from dcgan.runtime.cpu_share import choose_cpu_threads
from dcgan.runtime.distributed import SINGLE, Distributed
from dcgan.runtime.process import (
    StopSignals,
    configure_backends,
    resolve_device,
    seed_everything,
)
from dcgan.store.checkpoints import (
    load_checkpoint,
    load_newest_valid,
    resolve_checkpoint,
)
from dcgan.store.run_lock import sole_writer
from dcgan.training.hooks.ada import AdaptiveAugmentation
from dcgan.training.hooks.bad_files import BadFiles
from dcgan.training.hooks.collapse_guard import CollapseGuard
from dcgan.training.hooks.fixed_grid import SampleGrids
from dcgan.training.hooks.lr_tail import LearningRateTail
from dcgan.training.hooks.nonfinite import NonFiniteRecovery
from dcgan.training.hooks.replicas import ReplicaCheck
from dcgan.training.hooks.saving import Checkpoints
from dcgan.training.hooks.scoring import Evaluation
from dcgan.training.loop import Outcome, Trainer
from dcgan.training.pair import GANPair, initialise_from

log = logging.getLogger("dcgan")


class CollapseStop(DCGANError):
    """collapse.policy=stop (or rollback with none left): the run was checkpointed and ended."""

    exit_code = 4


def build_trainer(cfg: DictConfig, dataset: Dataset, run_dir: Path, device: torch.device,
                  layout: Distributed = SINGLE) -> Trainer:
    """The loop, the GAN pair and every hook for a validated config (no loggers yet: attach
    them once a resumed state is loaded). Draws the initial weights and the fixed noise from
    torch's global RNG, in that order. A conditional config needs `dataset` built with its
    labels (`dataset_for`)."""
    fake_labels = labels_for_fakes(cfg, dataset, device)
    settings = resolve(cfg, batches_per_epoch(len(dataset), cfg.batch_size, layout.world_size),
                       fake_labels.space if fake_labels else None)
    gan = GANPair(settings.gan, device, layout, fake_labels)
    samples = SampleGrids(run_dir, settings.gan.arch.nz, device, layout, gan.fake_labels)
    feature_cache = feature_cache_path(run_dir, cfg.dataset, cfg.eval)
    classifier = (classifier_cache_path(run_dir, cfg.dataset, cfg.condition.kind)
                  if fake_labels is not None else None)
    hooks = [BadFiles(settings.on_bad_image), ReplicaCheck(settings.ddp_check_every, layout),
             samples, Evaluation(settings.evaluation, dataset, device, layout, feature_cache,
                                 classifier),
             CollapseGuard(settings.guard), NonFiniteRecovery(settings.nonfinite),
             AdaptiveAugmentation(settings.ada, layout)]
    if settings.lr_tail is not None:  # after the guard and the recovery: it scales their rates
        hooks.append(LearningRateTail(settings.lr_tail))
    checkpoints = Checkpoints(run_dir, settings.checkpoints, to_plain_dict(cfg), layout)
    return Trainer(settings.loop, gan, dataset, checkpoints, hooks, layout=layout)


def dataset_for(cfg: DictConfig) -> Dataset:
    """The data set of a run, with the labels its condition asks for."""
    attributes = list(cfg.dataset.attributes) if cfg.dataset.attributes is not None else None
    return build_dataset(cfg.dataset, labels=cfg.condition.kind, attributes=attributes)


def labels_for_fakes(cfg: DictConfig, dataset: Dataset, device: torch.device
                     ) -> Optional[FakeLabels]:
    """What a conditional run asks G for: the data's label space, and the class counts or
    attribute rows its fakes draw from; None for an unconditional run."""
    if cfg.condition.kind == "none":
        return None
    labels = labels_of(dataset)
    space = LabelSpace(labels.kind, labels.names)
    return fake_labels_from_data(space, labels.values, cfg.condition.sample, device, cfg.seed)


def train(cfg: DictConfig, task_overrides: list[str], run_dir: Path,
          layout: Distributed = SINGLE) -> None:
    """Train as `cfg` says, in `run_dir`. Raises DCGANError for anything the user can fix.

    Under torchrun every rank runs this; rank 0 alone writes files. The run directory is
    this run's alone while it trains (dcgan.store.run_lock: a second writer is refused before
    anything is read or written).
    """
    with sole_writer(run_dir, layout):
        run_training(cfg, task_overrides, run_dir, layout)


def resolve_cpu_threads(cfg: DictConfig) -> None:
    """cpu_threads=auto becomes the count chosen now, so checkpoints keep it and a resumed run
    trains with the threads it started with (torch's results depend on the count)."""
    if cfg.cpu_threads == "auto":
        choice = choose_cpu_threads()
        log.info(choice.describe())
        cfg.cpu_threads = choice.threads


def run_training(cfg: DictConfig, task_overrides: list[str], run_dir: Path,
                 layout: Distributed = SINGLE) -> None:
    """`train`, with the run directory held."""
    resumed = checkpoint_to_resume(cfg, run_dir)
    if resumed is not None:
        cfg = apply_resume_overrides(resumed[1]["config"], cfg, task_overrides)
    validate(cfg)
    resolve_cpu_threads(cfg)
    OmegaConf.set_readonly(cfg, True)  # from here on the config is only read
    device = resolve_device(cfg.device, layout.local_rank)
    configure_backends(device, cfg.cpu_threads)
    refuse_under_torchrun(cfg, device, layout)
    if cfg.eval.fid and cfg.eval.every:
        inception_weights_path(cfg.eval.inception_weights)  # before training, not after epoch 1
    seed_everything(cfg.seed + layout.rank)  # each rank its own noise; DDP syncs the weights
    dataset = dataset_for(cfg)
    trainer = build_trainer(cfg, dataset, run_dir, device, layout)
    start_from(trainer, cfg, resumed)
    if layout.is_main:
        write_config(run_dir, cfg)
    log.info("run directory: %s (%d images, device %s%s)", run_dir, len(dataset), device,
             f", {layout.world_size} processes, global batch {cfg.batch_size * layout.world_size}"
             if layout.enabled else "")
    # events an earlier process wrote past this point (killed before its first checkpoint too,
    # then started afresh by resume=auto) are dropped, so each step is logged once
    purge_step = trainer.step + 1
    trainer.loggers = make_loggers(cfg, run_dir, purge_step) if layout.is_main else Loggers()
    started = time.perf_counter()
    outcome: Optional[Outcome] = None
    try:
        with StopSignals() as trainer.stop:
            outcome = trainer.fit()
    except BaseException as error:
        trainer.loggers.close()
        trainer.checkpoints.finish_writes(raise_errors=False)  # reported, not raised over `error`
        if layout.is_main:
            write_run_files(run_dir, trainer, ended_by_error(error), time.perf_counter() - started,
                            cfg.report)
        raise
    trainer.loggers.close()
    trainer.checkpoints.finish_writes()
    conclude(outcome, trainer, run_dir, time.perf_counter() - started, cfg.report)


def start_from(trainer: Trainer, cfg: DictConfig,
               resumed: Optional[tuple[Path, dict[str, Any]]]) -> None:
    """The resumed checkpoint's whole state, or init_from's weights, or nothing (fresh)."""
    if resumed is not None:
        try:
            trainer.load_state_dict(resumed[1])
        except DCGANError as error:
            raise DCGANError(f"cannot resume from {resumed[0]}: {error}") from error
    elif cfg.init_from:  # (a fine-tuning run that was resumed goes on from its own state)
        source = resolve_checkpoint(cfg.init_from)
        initialise_from(trainer.gan, load_checkpoint(source), str(source), cfg.init_from_optim,
                        cfg.init_from_unconditional)
        log.info("starting from the weights of %s%s", source,
                 " and its optimiser moments" if cfg.init_from_optim else "")


def make_loggers(cfg: DictConfig, run_dir: Path, purge_step: int) -> Loggers:
    """The loggers `logger=[...]` names (validated: known, and their packages installed)."""
    loggers = []
    for name in cfg.logger:
        if name == "tensorboard":
            loggers.append(TensorBoardLogger(run_dir, purge_step))
        elif name == "csv":
            loggers.append(CSVLogger(run_dir, purge_step))
        elif name == "wandb":
            from dcgan.reporting.loggers.wandb import WandbLogger  # an optional extra

            loggers.append(WandbLogger(run_dir, to_plain_dict(cfg)))
    return Loggers(loggers)


def refuse_under_torchrun(cfg: DictConfig, device: torch.device, layout: Distributed) -> None:
    """What depends on the process layout rather than the config alone."""
    if layout.enabled and cfg.model.sync_bn and device.type != "cuda":
        raise DCGANError("model.sync_bn=true needs CUDA GPUs (SyncBatchNorm); drop it on the CPU")
    if layout.enabled and cfg.loss.value == "wgan_gp":
        raise DCGANError("loss=wgan_gp runs in one process for now (its gradient penalty is "
                         "not synchronised by DistributedDataParallel); use hinge under torchrun")


def conclude(outcome: Outcome, trainer: Trainer, run_dir: Path, seconds: float,
             report: bool) -> None:
    """Write the summary and the report, tell the user how the run ended; a stopped run
    leaves with its exit code."""
    if trainer.layout.is_main:
        write_run_files(run_dir, trainer, status_of(outcome, trainer), seconds, report)
    if outcome.signum is not None:
        log.warning("stopped by %s at epoch %d, batch %d of the epoch (step %d); saved %s",
                    signal.Signals(outcome.signum).name, trainer.epoch + 1,
                    trainer.batch_in_epoch, trainer.step, outcome.checkpoint)
        log.warning("resume with: dcgan-train resume=%s", run_dir)
        raise SystemExit(128 + outcome.signum)
    if outcome.reason is not None:
        raise CollapseStop(outcome.reason)
    if not trainer.layout.is_main:
        return
    log.info("done. report: %s", run_dir / REPORT_FILE if report else f"dcgan-report {run_dir}")
    log.info("TensorBoard: tensorboard --logdir %s", run_dir)
    log.info("samples: dcgan-sample --ckpt %s --n 16", run_dir)
    log.info("continue: dcgan-train resume=%s epochs=%d", run_dir, trainer.epoch + 5)


def status_of(outcome: Outcome, trainer: Trainer) -> tuple[str, str]:
    """(one word for tables, one sentence for people) on how the run ended."""
    where = f"epoch {trainer.epoch}, step {trainer.step}"
    if outcome.signum is not None:
        return "interrupted", (f"stopped by {signal.Signals(outcome.signum).name} at step "
                               f"{trainer.step}; resumable with dcgan-train resume=RUN_DIR")
    if outcome.reason is not None:
        return "collapsed", f"stopped by the collapse guard at {where}: {outcome.reason}"
    return "finished", f"finished: trained to {where}"


def ended_by_error(error: BaseException) -> tuple[str, str]:
    if isinstance(error, DCGANError):
        return "error", f"stopped at an error: {' '.join(str(error).split())}"
    return "error", f"ended by an unexpected {type(error).__name__}: {error}"


def write_run_files(run_dir: Path, trainer: Trainer, status: tuple[str, str],
                    seconds: float, report: bool) -> None:
    """summary.json and (unless report=false) report.html; a failure here is reported, never
    raised over the outcome of the run itself."""
    try:
        write_summary(run_dir, trainer, status, seconds)
        if report:
            write_report(run_dir, status[1])
    except Exception as error:  # the run's own result matters more than its report
        log.warning("could not write the run summary or report.html: %s", error)


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    except OSError as error:
        raise DCGANError(f"cannot write to the run directory {run_dir}: {error.strerror}; "
                         "choose another with hydra.run.dir=...") from error


def write_summary(run_dir: Path, trainer: Trainer, status: tuple[str, str],
                  seconds: float) -> None:
    """RUN_DIR/summary.json: how and where training ended, and its last logged metrics."""
    summary = {"status": status[0], "ended": status[1], "epoch": trainer.epoch, "step": trainer.step,
               "seconds": round(seconds, 1),
               **{key: round(value, 5) for key, value in trainer.last_metrics.items()}}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path
                         ) -> Optional[tuple[Path, dict[str, Any]]]:
    """The checkpoint `resume` names: none, a path, or "auto" (the run directory's newest
    checkpoint that loads, or a fresh start if there is none)."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        found = load_newest_valid(run_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s, starting fresh", run_dir)
            return None
        checkpoint, state = found
    else:
        checkpoint = resolve_checkpoint(cfg.resume)
        state = load_checkpoint(checkpoint)
    log.info("resuming from %s (epoch %d, step %d)", checkpoint, state["epoch"], state["step"])
    return checkpoint, state
