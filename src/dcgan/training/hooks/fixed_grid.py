"""The sample hook: a 4x4 grid from one fixed noise tensor at the end of every epoch
(TensorBoard samples/fixed and RUN_DIR/samples/epoch_NNN.png), the grids of all epochs so far
as one looping animation (RUN_DIR/samples/progress.gif, rewritten atomically each epoch), and a
grid of real training images once, at the start of a fresh run (samples/real, and
RUN_DIR/samples/real.png).

A conditional model's grid shows its labels: one row per class (up to 16 rows of 8, each
column one fixed noise across the classes), or for attributes 16 fixed rows of real attribute
vectors, each with its own noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image
from torch import nn

from dcgan.files.images import image_grid, save_png, write_gif
from dcgan.nets.conditioning import FakeLabels
from dcgan.nets.models import in_mode
from dcgan.runtime.distributed import SINGLE, Distributed
from dcgan.training.hooks.base import Answer, Hook, LoopView

N_FIXED_SAMPLES = 16  # the 4x4 grid logged every epoch
CLASS_GRID_COLUMNS = 8  # a conditional grid: this many samples of each class, one row each
CLASS_GRID_ROWS = 16  # at most this many classes shown
PROGRESS_GIF = "progress.gif"
PROGRESS_FRAME_MS = 400


class SampleGrids(Hook):
    name = "samples"

    def __init__(self, run_dir: Path, nz: int, device: torch.device,
                 layout: Distributed = SINGLE, fake_labels: Optional[FakeLabels] = None):
        self.folder, self.device, self.layout = run_dir / "samples", device, layout
        self.space = fake_labels.space if fake_labels is not None else None
        self.fixed_labels: Optional[torch.Tensor] = None  # label values, conditional
        self.nrow = 4
        # drawn from the global RNG: build this hook right after the GAN pair, as always
        if self.space is None:
            self.fixed_noise = torch.randn(N_FIXED_SAMPLES, nz, 1, 1).to(device)
        elif self.space.kind == "class":
            rows = min(self.space.size, CLASS_GRID_ROWS)
            columns = torch.randn(CLASS_GRID_COLUMNS, nz, 1, 1)
            self.fixed_noise = columns.repeat(rows, 1, 1, 1).to(device)
            self.fixed_labels = fake_labels.every_class(CLASS_GRID_COLUMNS)[
                : rows * CLASS_GRID_COLUMNS].to(device)
            self.nrow = CLASS_GRID_COLUMNS
        else:
            self.fixed_noise = torch.randn(N_FIXED_SAMPLES, nz, 1, 1).to(device)
            self.fixed_labels = fake_labels.draw(N_FIXED_SAMPLES).to(device)
        self.frames: dict[int, Optional[Image.Image]] = {}  # epoch -> its grid, for the GIF

    def on_fit_start(self, loop: LoopView) -> None:
        if loop.step == 0 and self.layout.is_main:
            reals = real_images(loop.dataset, N_FIXED_SAMPLES)
            if len(reals):
                grid = image_grid(reals, nrow=4)
                loop.loggers.image("samples/real", grid, loop.step)
                save_png(grid, self.folder / "real.png")

    def on_epoch_end(self, loop: LoopView) -> Answer:
        if self.layout.is_main:
            grid = image_grid(self.fixed_samples(loop.gan.sampling_generator), nrow=self.nrow)
            loop.loggers.image("samples/fixed", grid, loop.step)
            save_png(grid, self.folder / f"epoch_{loop.epoch:03d}.png")
            self.write_progress(loop.epoch)
        return None

    def write_progress(self, epoch: int) -> None:
        """progress.gif from the grids of epochs 1..epoch on disk (those of an earlier process
        too, after a resume; an epoch trained again after a rollback replaced its own)."""
        self.frames[epoch] = self._read_grid(epoch)  # just written (again, after a rollback)
        for number in range(1, epoch):
            if number not in self.frames:  # an earlier process's grids, read once
                self.frames[number] = self._read_grid(number)
        frames = [self.frames[n] for n in range(1, epoch + 1) if self.frames[n] is not None]
        if frames:
            write_gif(frames, self.folder / PROGRESS_GIF, PROGRESS_FRAME_MS)

    def _read_grid(self, epoch: int) -> Optional[Image.Image]:
        path = self.folder / f"epoch_{epoch:03d}.png"
        if not path.is_file():
            return None
        with Image.open(path) as image:
            return image.copy()

    @torch.no_grad()
    def fixed_samples(self, generator: nn.Module) -> torch.Tensor:
        """G(fixed noise [, fixed labels]) in eval mode (BatchNorm running statistics), as
        [-1, 1] images."""
        with in_mode(generator, training=False):
            if self.fixed_labels is None:
                return generator(self.fixed_noise)
            return generator(self.fixed_noise, self.space.vectors(self.fixed_labels))

    def state_dict(self) -> dict[str, Any]:
        state = {"fixed_noise": self.fixed_noise.cpu()}
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels.cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "fixed_noise" in state:
            self.fixed_noise = state["fixed_noise"].to(self.device)
        if "fixed_labels" in state and self.fixed_labels is not None:
            self.fixed_labels = state["fixed_labels"].to(self.device)


def real_images(dataset, n: int) -> torch.Tensor:
    """The first n readable images among the first 4n of the data set."""
    reals = []
    for index in range(min(len(dataset), 4 * n)):
        item = dataset[index]
        if isinstance(item, torch.Tensor):
            reals.append(item)
        if len(reals) == n:
            break
    return torch.stack(reals) if reals else torch.empty(0)
