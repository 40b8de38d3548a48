"""`dcgan-train`: the Hydra entry point. Composes and checks the config, then trains.

    dcgan-train dataset=celeba dataset.root=/data/celeba epochs=20
    dcgan-train resume=runs/celeba/2026-11-22_10-00-00 epochs=25
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dcgan.checkpoint import load_checkpoint, resolve_checkpoint, run_dir_of
from dcgan.config import config_dir, from_plain_dict, register_configs, validate
from dcgan.data import build_dataset
from dcgan.errors import DCGANError, exit_with
from dcgan.runtime import resolve_device, seed_everything
from dcgan.tracking import Tracker
from dcgan.trainer import Trainer

log = logging.getLogger("dcgan")

# Overrides that change the shapes of the networks cannot be applied to a checkpoint.
ARCHITECTURE_KEYS = ("dataset.channels", "dataset.image_size")


def run(cfg: DictConfig, task_overrides: list[str], run_dir: Path) -> None:
    """Train as `cfg` says, in `run_dir`. Raises DCGANError for anything the user can fix."""
    state: Optional[dict[str, Any]] = None
    if cfg.resume:
        checkpoint = resolve_checkpoint(cfg.resume)
        state = load_checkpoint(checkpoint)
        cfg = config_for_resume(state["config"], cfg, task_overrides)
        log.info("resuming from %s (epoch %d, step %d)", checkpoint, state["epoch"], state["step"])
    validate(cfg)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    dataset = build_dataset(cfg.dataset)
    trainer = Trainer(cfg, dataset, run_dir, device)
    if state is not None:
        trainer.load_state_dict(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log.info("run directory: %s (%d images, device %s)", run_dir, len(dataset), device)
    tracker = Tracker(run_dir, purge_step=trainer.step + 1 if state is not None else None)
    try:
        trainer.fit(tracker)
    finally:
        tracker.close()
    log.info("done. TensorBoard: tensorboard --logdir %s", run_dir)
    log.info("samples: dcgan-sample --ckpt %s --n 16", run_dir)
    log.info("continue: dcgan-train resume=%s epochs=%d", run_dir, trainer.epoch + 5)


def config_for_resume(saved: dict[str, Any], composed: DictConfig,
                      task_overrides: list[str]) -> DictConfig:
    """The checkpoint's config with the user's command-line overrides applied on top.

    Overrides that would change the networks (model.*, channels, image size, another data
    set) are refused; the rest (epochs, lr, log_every, dataset.root, ...) are applied and logged.
    """
    cfg = from_plain_dict(saved)
    for override in task_overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra."):
            continue
        if key in ("dataset", "model"):
            if value != cfg[key].name:
                raise DCGANError(f"cannot resume with {key}={value}: the checkpoint was trained "
                                 f"with {key}={cfg[key].name}")
            continue
        old, new = OmegaConf.select(cfg, key), OmegaConf.select(composed, key)
        if old == new:
            continue
        if key.startswith("model.") or key in ARCHITECTURE_KEYS:
            raise DCGANError(f"cannot resume with {key}={new}: the checkpoint's networks were "
                             f"built with {key}={old}; start a new run to change the architecture")
        log.info("resume: %s changed from %s to %s", key, old, new)
        OmegaConf.update(cfg, key, new, merge=False)
    cfg.resume = composed.resume
    return cfg


def route_resume_to_run_dir(argv: list[str]) -> list[str]:
    """`resume=PATH` continues in PATH's run directory unless hydra.run.dir is given."""
    if any(arg.startswith("hydra.run.dir=") for arg in argv):
        return argv
    for arg in argv[1:]:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "resume" and value not in ("", "null"):
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
        run(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
    except DCGANError as error:
        exit_with(error)
    except KeyboardInterrupt:
        log.warning("interrupted")
        raise SystemExit(130) from None


def main() -> None:
    sys.argv = route_resume_to_run_dir(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    main()
