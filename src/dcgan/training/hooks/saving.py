"""The checkpoint hook: when to save (every `every_steps` steps, every epoch, on a stop or a
rollback), what to keep (the newest `keep_last` numbered files, last.pt, best.pt by the
evaluation metric `select`, generator.safetensors), and the file a non-finite loss leaves.

Two kinds of save. A full save (each epoch's end, best.pt, a stop, a rollback) re-estimates the
sampling generator's BatchNorm statistics for the weights at hand (ema.recalibrate_bn) and
rewrites generator.safetensors. A step checkpoint (every `every_steps` steps) does neither: it
keeps the newest estimate, tagged with the step it belongs to, and is copied and written in the
background (dcgan.store.writer) while training goes on, so it costs the loop about a copy of the
state. Neither kind changes training: the estimate is made on a copy of G.

Files are written by dcgan.store.checkpoints (atomically); every rank builds the state (the RNG of
each rank goes in), rank 0 writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dcgan.files.atomic import remove_stale_temporaries
from dcgan.runtime.distributed import SINGLE, Distributed, barrier
from dcgan.store.checkpoints import (
    BEST,
    CHECKPOINT_DIR,
    GENERATOR_FILE,
    LAST,
    epoch_checkpoint_name,
    newest_before,
    prune_numbered,
    save_checkpoint,
    save_generator,
    set_aside_after,
    step_checkpoint_name,
)
from dcgan.store.writer import BackgroundWriter, snapshot
from dcgan.training.hooks.base import Answer, Hook, Interrupted, LoopView, Stop
from dcgan.training.pair import NonFiniteLoss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointSettings:
    every_steps: int = 0  # extra step_*.pt every N steps; 0: only per epoch
    keep_last: int = 3  # numbered checkpoints of each kind kept; 0: all
    select: str = "swd/mean"  # the evaluation metric that picks best.pt (lower is better)


class Checkpoints(Hook):
    name = "checkpoints"

    def __init__(self, run_dir: Path, settings: CheckpointSettings, config: dict[str, Any],
                 layout: Distributed = SINGLE):
        self.folder = run_dir / CHECKPOINT_DIR
        self.settings, self.config, self.layout = settings, config, layout
        self.best_value = float("inf")  # of settings.select, for best.pt
        self.writer = BackgroundWriter()  # step checkpoints (rank 0)
        self.copy: Optional[dict[str, Any]] = None  # the newest step checkpoint's state, copied
        self.estimated_at: Optional[int] = None  # the step the newest BatchNorm estimate is for

    def on_fit_start(self, loop: LoopView) -> None:
        if self.folder.is_dir():
            remove_stale_temporaries(self.folder)

    def after_step(self, loop: LoopView) -> None:
        every = self.settings.every_steps
        if every and loop.step % every == 0:
            self.save_step(loop, step_checkpoint_name(loop.step))

    def on_epoch_end(self, loop: LoopView) -> Answer:
        value = loop.epoch_metrics.get(self.settings.select)
        improved = value is not None and value < self.best_value
        if value is not None:
            self.best_value = min(value, self.best_value)
        self.save(loop, epoch_checkpoint_name(loop.epoch), best=improved)
        return None

    def after_rollback(self, loop: LoopView, path: Path) -> None:
        """The abandoned course goes to abandoned/; last.pt starts the new one (a crash from
        here resumes with the stabilisers on)."""
        self.estimated_at = None  # the newest estimate was made for the abandoned weights
        barrier(self.layout)  # every rank has read the checkpoint before files move
        if self.layout.is_main:
            set_aside_after(self.folder, loop.step)
        self.save(loop)

    def on_stop(self, loop: LoopView, answer: Union[Stop, Interrupted]) -> None:
        self.save(loop)

    def on_error(self, loop: LoopView, error: Exception) -> Answer:
        """A non-finite loss: the state before that update, for inspection; last.pt and the
        numbered checkpoints stay as they were."""
        if isinstance(error, NonFiniteLoss):
            path = self.folder / f"nonfinite_step_{error.step}.pt"
            state = self.payload(loop)
            if self.layout.is_main:
                self.writer.wait()
                save_checkpoint(state, [path])
            error.saved_to = path
        return None

    def save(self, loop: LoopView, *numbered: str, best: bool = False) -> Path:
        """A full save: last.pt (and the numbered names given, and best.pt when `best`) with
        the BatchNorm statistics estimated for these weights, the shareable generator (the
        moving average when on), then prune old numbered files."""
        if self.layout.is_main:
            sampling = loop.gan.sampling_generator  # re-estimated here unless already current
        state = self.payload(loop)
        if self.layout.is_main:
            self.writer.wait()  # a step checkpoint still being written lands first
            names = [*numbered, LAST, *([BEST] if best else [])]
            save_checkpoint(state, [self.folder / name for name in names])
            save_generator(sampling.state_dict(), state["arch"], self.folder / GENERATOR_FILE,
                           labels=state.get("labels"), epoch=loop.epoch, step=loop.step)
            prune_numbered(self.folder, self.settings.keep_last)
        barrier(self.layout)
        return self.last

    def save_step(self, loop: LoopView, name: str) -> None:
        """A step checkpoint (and last.pt): the state as it is, copied now and written in the
        background; no new BatchNorm estimate and no generator file."""
        state = self.payload(loop)
        if self.layout.is_main:
            self.writer.wait()  # the step checkpoint before is on disk: its copy can be reused
            state = self.copy = snapshot(state, into=self.copy)
            paths = [self.folder / name, self.last]
            self.writer.submit(lambda: self.write_step(state, paths))
        barrier(self.layout)

    def write_step(self, state: dict[str, Any], paths: list[Path]) -> None:
        save_checkpoint(state, paths)
        prune_numbered(self.folder, self.settings.keep_last)

    def finish_writes(self, raise_errors: bool = True) -> None:
        """Wait for a step checkpoint still being written (rank 0); its failure is raised, or
        with raise_errors=False logged (the run is ending with another error)."""
        try:
            self.writer.wait()
        except Exception as error:
            if raise_errors:
                raise
            log.warning("a step checkpoint could not be written: %s", error)

    @property
    def last(self) -> Path:
        return self.folder / LAST

    def payload(self, loop: LoopView) -> dict[str, Any]:
        """The loop's state and the config; the newest BatchNorm estimate tagged with the step
        of the weights it was made for (dropped if that step is unknown)."""
        state = {**loop.state_dict(), "config": self.config}
        if "sampling_bn" in state:
            if loop.gan.recalibrated.current:
                self.estimated_at = loop.step
            if self.estimated_at is None:
                del state["sampling_bn"]
            else:
                state["sampling_bn_step"] = self.estimated_at
        return state

    def newest_before(self, step: int) -> Optional[tuple[Path, dict[str, Any]]]:
        if self.layout.is_main:
            self.writer.wait()
        barrier(self.layout)  # rank 0's writes are on disk before any rank reads
        return newest_before(self.folder, step)

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value = float(state.get("best_value", float("inf")))
        self.estimated_at = None
