"""Image conversions in one place: float images in [-1, 1] <-> uint8, grids, PNG and GIF files.

Inside the package images are float tensors in [-1, 1], N x C x H x W; uint8 appears only at
the edges (image files, the decoded-image cache, TensorBoard).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from dcgan.files.atomic import atomic_path

GIF_FRAME_MS = 120


def to_signed_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255], same shape and device (the exact inverse of
    to_signed_unit for images that came from uint8)."""
    return images.detach().float().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """`to_uint8` on the CPU, for files and loggers."""
    return to_uint8(images.cpu())


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


def save_png(image_uint8: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image_uint8).save(path, format="PNG")  # PNG whatever the name ends with


def save_gif(images: torch.Tensor, path: Path, frame_ms: int = GIF_FRAME_MS) -> None:
    """Images in [-1, 1] as an endlessly looping animated GIF, one frame per image."""
    write_gif([to_pil(image) for image in images_to_uint8(images)], path, frame_ms)


def write_gif(frames: list[Image.Image], path: Path, frame_ms: int = GIF_FRAME_MS) -> None:
    """PIL images as an endlessly looping animated GIF, written atomically."""
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=frame_ms, loop=0)
