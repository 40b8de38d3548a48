"""`dcgan-train`: the Hydra entry point. Hydra composes the config; dcgan.cli.run trains.

    dcgan-train dataset=celeba dataset.root=/data/celeba epochs=20
    dcgan-train resume=runs/celeba/2026-11-22_10-00-00 epochs=25
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dcgan.config import check_overrides, config_dir, expand_shorthands, register_configs
from dcgan.errors import DCGANError, exit_with, usage_error
from dcgan.runtime import cpu_share, distributed
from dcgan.runtime.distributed import SINGLE, Distributed

# The training itself (dcgan.cli.run and what it pulls in: torch, the loop, the hooks,
# TensorBoard, the report) is imported once Hydra has composed a config to train on, and torch
# only then (or for the process group under torchrun), so that --help, --cfg and a refused
# command line answer without loading it.

log = logging.getLogger("dcgan")


def route_resume_to_run_dir(argv: list[str]) -> list[str]:
    """`resume=PATH` continues in PATH's run directory unless hydra.run.dir is given."""
    if any(arg.startswith("hydra.run.dir=") for arg in argv):
        return argv
    for arg in argv[1:]:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "resume" and value not in ("", "null", "auto"):
            from dcgan.store.checkpoints import resolve_checkpoint, run_dir_of

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
    from dcgan.cli.run import train
    from dcgan.runtime.process import StopNow

    hydra_cfg = HydraConfig.get()
    try:
        train(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir),
              distributed.from_environment())
    except DCGANError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one bad job does not end the sweep
            log.error("job %s failed: %s", hydra_cfg.job.num, error)
            return
        exit_with(error)
    except StopNow as stop:
        log.warning("stopped at once by a second %s; the last checkpoint is intact", stop)
        log.warning("resume with: dcgan-train resume=%s", hydra_cfg.runtime.output_dir)
        raise SystemExit(128 + stop.signum) from None


def check_command_line(argv: list[str]) -> None:
    """Refuse an unknown option, key or group option, a value of the wrong type or an override
    that does not parse as one line and exit code 2, naming the closest keys, before Hydra
    would (with its usage block, or five lines and exit code 1)."""
    parser = get_args_parser()  # Hydra's own: it reads the same command line next
    parser.error = functools.partial(usage_error, parser)
    args = parser.parse_args(argv[1:])
    if args.shell_completion or args.experimental_rerun:
        return  # their arguments are not overrides of this config
    try:
        check_overrides(args.overrides)
    except DCGANError as error:
        exit_with(error)


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


def distributed_arguments(argv: list[str], layout: Optional[Distributed]) -> list[str]:
    """Under torchrun: one run directory for all ranks (rank 0's timestamp), and Hydra's own
    files and log written by rank 0 only. `layout`: None for a single process."""
    if layout is None or not layout.enabled:
        return argv
    if not any(arg.startswith("hydra.run.dir=") for arg in argv):
        stamp = distributed.broadcast_object(time.strftime("%Y-%m-%d_%H-%M-%S"), layout)
        argv = [*argv, f"hydra.run.dir=runs/${{dataset.name}}/{stamp}"]
    if not layout.is_main:
        argv = [*argv, "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    return argv


def explicit_run_dir(argv: list[str]) -> Optional[Path]:
    """hydra.run.dir=... where the command line names one directory before Hydra composes."""
    if any(arg in ("--help", "-h", "--cfg", "-c", "--info", "--multirun", "-m", "--hydra-help")
           for arg in argv[1:]):
        return None
    explicit = [arg.partition("=")[2] for arg in argv if arg.startswith("hydra.run.dir=")]
    return None if not explicit or "${" in explicit[-1] else Path(explicit[-1]).expanduser()


def run(argv: list[str], layout: Optional[Distributed]) -> None:
    """Hydra composes the config and trains; `layout`: None for a single process."""
    sys.argv = distributed_arguments(route_resume_to_run_dir(argv), layout)
    check_output_dir(sys.argv)
    with ExitStack() as held:
        run_dir = explicit_run_dir(sys.argv)
        if run_dir is not None:  # before Hydra writes .hydra/ and its log there
            from dcgan.store.run_lock import sole_writer
            try:
                held.enter_context(sole_writer(run_dir, layout or SINGLE))
            except DCGANError as error:
                exit_with(error)
        _hydra_main()


def run_in_process_group(argv: list[str]) -> None:
    """`run` as one rank of a torchrun launch, inside the process group."""
    import torch

    layout = distributed.from_environment()
    try:
        distributed.start(layout, use_cuda=torch.cuda.is_available()
                          and "device=cpu" not in argv)
    except DCGANError as error:
        exit_with(error)
    finished = False
    try:
        run(argv, layout)
        finished = True
    finally:
        distributed.stop(all_finished=finished)


def main() -> None:
    cpu_share.note_start()  # cpu_threads=auto watches the other processes from here
    argv = [sys.argv[0], *expand_shorthands(sys.argv[1:])]
    check_command_line(argv)
    if distributed.from_environment().enabled:
        run_in_process_group(argv)
    else:
        run(argv, layout=None)


if __name__ == "__main__":
    main()
