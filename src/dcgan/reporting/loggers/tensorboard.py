"""TensorBoard event files in the run directory (the tags are in dcgan.reporting.loggers.base)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from dcgan.reporting.loggers.base import Logger, tag_of

if TYPE_CHECKING:
    import torch


class TensorBoardLogger(Logger):
    def __init__(self, log_dir: Path, purge_step: Optional[int] = None):
        from torch.utils.tensorboard import SummaryWriter  # slow to import: only when used

        # purge_step drops events a crashed run wrote after its last checkpoint
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(tag_of(name), value, step)

    def image(self, tag: str, image_uint8: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image_uint8, step, dataformats="CHW")

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
