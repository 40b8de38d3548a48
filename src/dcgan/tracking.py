"""What a user watches: TensorBoard scalars and image grids, PNG files, progress-bar text.

TensorBoard tags (documented in the README):
  loss/d, loss/g           discriminator and generator losses
  d/real_prob              mean D(x) on real images (sigmoid of the logits)
  d/fake_prob              mean D(G(z)) on generated images, during the D step
  perf/img_per_s           real images consumed per second over the logging window
  samples/fixed            4x4 grid from one fixed noise tensor, once per epoch
  samples/real             a grid of real training images, once per run
  metrics/swd/<res>, metrics/swd/mean, metrics/diversity (and metrics/fid, metrics/kid)
                           quality of the samples at each evaluation (eval.every epochs)
  collapse                 text: what the collapse detector saw, and what it did
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

SCALAR_TAGS = {
    "loss_d": "loss/d",
    "loss_g": "loss/g",
    "real_prob": "d/real_prob",
    "fake_prob": "d/fake_prob",
    "img_per_s": "perf/img_per_s",
}


def image_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2
               ) -> torch.Tensor:
    """Images in [-1, 1] (N x C x H x W) -> one uint8 grid C x H' x W' (C kept as 1 or 3)."""
    tiles = images_to_uint8(images)
    n, channels, height, width = tiles.shape
    nrow = min(nrow or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / nrow)
    step_y, step_x = height + padding, width + padding
    grid = torch.zeros((channels, rows * step_y + padding, nrow * step_x + padding),
                       dtype=torch.uint8)
    for index, tile in enumerate(tiles):
        y, x = padding + (index // nrow) * step_y, padding + (index % nrow) * step_x
        grid[:, y : y + height, x : x + width] = tile
    return grid


def to_pil(image_uint8: torch.Tensor) -> Image.Image:
    """uint8 C x H x W (C = 1 or 3) -> a PIL image in mode L or RGB."""
    if image_uint8.shape[0] == 1:
        return Image.fromarray(image_uint8[0].numpy(), mode="L")
    return Image.fromarray(image_uint8.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], same shape."""
    return images.detach().float().cpu().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def save_png(image_uint8: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image_uint8).save(path, format="PNG")  # PNG whatever the name ends with


class Tracker:
    """TensorBoard events for one run directory."""

    def __init__(self, log_dir: Path, purge_step: Optional[int] = None):
        # purge_step drops events a crashed run wrote after its last checkpoint
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(SCALAR_TAGS.get(key, key), value, step)

    def grid(self, tag: str, grid_uint8: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, grid_uint8, step, dataformats="CHW")

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def progress_text(values: dict[str, float]) -> dict[str, str]:
    """Short labels for the tqdm postfix (a window without a G step has no G loss)."""
    labels = (("D", "loss_d", ".3f"), ("G", "loss_g", ".3f"), ("D(x)", "real_prob", ".2f"),
              ("D(G(z))", "fake_prob", ".2f"), ("img/s", "img_per_s", ".0f"))
    return {label: format(values[key], spec) for label, key, spec in labels if key in values}


class NullTracker(Tracker):
    """What ranks other than 0 log to under torchrun: nothing."""

    def __init__(self) -> None:
        pass

    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def grid(self, tag: str, grid_uint8: torch.Tensor, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def close(self) -> None:
        pass
