"""`dcgan-train`: the Hydra entry point. Composes and checks the config, then trains.

    dcgan-train dataset=celeba dataset.root=/data/celeba epochs=20
    dcgan-train resume=runs/celeba/2026-11-22_10-00-00 epochs=25
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dcgan.checkpoint import load_checkpoint, load_newest_valid, resolve_checkpoint, run_dir_of
from dcgan.config import apply_resume_overrides, config_dir, register_configs, validate
from dcgan.data import build_dataset
from dcgan.errors import DCGANError, exit_with
from dcgan.metrics import inception_weights_path
from dcgan import distributed
from dcgan.distributed import SINGLE, Distributed
from dcgan.sweep import SUMMARY_FILE
from dcgan.runtime import (
    StopNow,
    StopSignals,
    configure_backends,
    resolve_device,
    seed_everything,
)
from dcgan.tracking import NullTracker, Tracker
from dcgan.trainer import Trainer, TrainingStopped

log = logging.getLogger("dcgan")


def run(cfg: DictConfig, task_overrides: list[str], run_dir: Path,
        layout: Distributed = SINGLE) -> None:
    """Train as `cfg` says, in `run_dir`. Raises DCGANError for anything the user can fix.

    Under torchrun every rank runs this; rank 0 alone writes files.
    """
    resumed = checkpoint_to_resume(cfg, run_dir)
    state = resumed[1] if resumed else None
    if state is not None:
        cfg = apply_resume_overrides(state["config"], cfg, task_overrides)
    validate(cfg)
    device = resolve_device(cfg.device, layout.local_rank)
    configure_backends(device, cfg.cpu_threads)
    if layout.enabled and cfg.model.sync_bn and device.type != "cuda":
        raise DCGANError("model.sync_bn=true needs CUDA GPUs (SyncBatchNorm); drop it on the CPU")
    if layout.enabled and str(cfg.loss.value) == "wgan_gp":
        raise DCGANError("loss=wgan_gp runs in one process for now (its gradient penalty is "
                         "not synchronised by DistributedDataParallel); use hinge under torchrun")
    if cfg.eval.fid and cfg.eval.every:
        inception_weights_path(cfg.eval.inception_weights)  # before training, not after epoch 1
    seed_everything(cfg.seed + layout.rank)  # each rank its own noise; DDP syncs the weights
    dataset = build_dataset(cfg.dataset)
    trainer = Trainer(cfg, dataset, run_dir, device, layout)
    if resumed is not None:
        try:
            trainer.load_state_dict(state)
        except DCGANError as error:
            raise DCGANError(f"cannot resume from {resumed[0]}: {error}") from error
    if layout.is_main:
        write_config(run_dir, cfg)
    log.info("run directory: %s (%d images, device %s%s)", run_dir, len(dataset), device,
             f", {layout.world_size} processes, global batch {cfg.batch_size * layout.world_size}"
             if layout.enabled else "")
    tracker = (Tracker(run_dir, purge_step=trainer.step + 1 if state is not None else None)
               if layout.is_main else NullTracker())
    started = time.perf_counter()
    try:
        with StopSignals() as trainer.stop:
            trainer.fit(tracker)
    except TrainingStopped as stopped:
        name = signal.Signals(stopped.signum).name
        log.warning("stopped by %s at epoch %d, batch %d of the epoch (step %d); saved %s",
                    name, trainer.epoch + 1, trainer.batch_in_epoch, trainer.step,
                    stopped.checkpoint)
        log.warning("resume with: dcgan-train resume=%s", run_dir)
        raise SystemExit(128 + stopped.signum) from None
    finally:
        tracker.close()
    if not layout.is_main:
        return
    write_summary(run_dir, trainer, time.perf_counter() - started)
    log.info("done. TensorBoard: tensorboard --logdir %s", run_dir)
    log.info("samples: dcgan-sample --ckpt %s --n 16", run_dir)
    log.info("continue: dcgan-train resume=%s epochs=%d", run_dir, trainer.epoch + 5)


def write_config(run_dir: Path, cfg: DictConfig) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    except OSError as error:
        raise DCGANError(f"cannot write to the run directory {run_dir}: {error.strerror}; "
                         "choose another with hydra.run.dir=...") from error


def write_summary(run_dir: Path, trainer: Trainer, seconds: float) -> None:
    """RUN_DIR/summary.json: where training ended and its last logged metrics (for sweeps)."""
    summary = {"epoch": trainer.epoch, "step": trainer.step, "seconds": round(seconds, 1),
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


def route_resume_to_run_dir(argv: list[str]) -> list[str]:
    """`resume=PATH` continues in PATH's run directory unless hydra.run.dir is given."""
    if any(arg.startswith("hydra.run.dir=") for arg in argv):
        return argv
    for arg in argv[1:]:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "resume" and value not in ("", "null", "auto"):
            try:
                run_dir = run_dir_of(resolve_checkpoint(value))
            except DCGANError:
                return argv  # reported properly once the config is composed
            # Hydra would otherwise rewrite .hydra/ with a config that is not the run's
            return [*argv, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    return argv


register_configs()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        run(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir),
            distributed.from_environment())
    except DCGANError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one bad job does not end the sweep
            log.error("job %s failed: %s", hydra_cfg.job.num, error)
            return
        exit_with(error)
    except StopNow as stop:
        log.warning("stopped at once by a second %s; the last checkpoint is intact", stop)
        raise SystemExit(128 + stop.signum) from None


def check_output_dir(argv: list[str]) -> None:
    """Refuse a run directory that cannot be created, before Hydra fails on it with a trace."""
    if any(arg in ("--help", "-h", "--cfg", "-c", "--info", "--multirun", "-m", "--hydra-help")
           for arg in argv[1:]):
        return
    explicit = [arg.partition("=")[2] for arg in argv if arg.startswith("hydra.run.dir=")]
    target = Path(explicit[-1] if explicit else "runs").expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
        if not os.access(target, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        exit_with(DCGANError(f"cannot create the run directory {target}: "
                             f"{error.strerror or error}; choose another with hydra.run.dir=..."))


def distributed_arguments(argv: list[str], layout: Distributed) -> list[str]:
    """Under torchrun: one run directory for all ranks (rank 0's timestamp), and Hydra's own
    files and log written by rank 0 only."""
    if not layout.enabled:
        return argv
    if not any(arg.startswith("hydra.run.dir=") for arg in argv):
        stamp = distributed.broadcast_object(time.strftime("%Y-%m-%d_%H-%M-%S"), layout)
        argv = [*argv, f"hydra.run.dir=runs/${{dataset.name}}/{stamp}"]
    if not layout.is_main:
        argv = [*argv, "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return argv


def main() -> None:
    layout = distributed.from_environment()
    try:
        distributed.start(layout, use_cuda=torch.cuda.is_available()
                          and "device=cpu" not in sys.argv)
    except DCGANError as error:
        exit_with(error)
    try:
        sys.argv = distributed_arguments(route_resume_to_run_dir(sys.argv), layout)
        check_output_dir(sys.argv)
        _hydra_main()
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
