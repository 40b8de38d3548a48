"""Weights & Biases (`pip install "dcgan[wandb]"`): the same scalar tags, the fixed-noise grid
each epoch, the texts, and the run's config. The wandb run id is kept in RUN_DIR/wandb_run_id,
so a resumed run continues the same wandb run. `WANDB_MODE=offline` works without a network
(sync later with `wandb sync RUN_DIR/wandb/offline-run-*`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import torch

from dcgan.reporting.loggers.base import Logger, tag_of

RUN_ID_FILE = "wandb_run_id"


class WandbLogger(Logger):
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        import wandb  # an optional extra; config validation said how to install it

        self.wandb = wandb
        id_file = run_dir / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dcgan"), dir=str(run_dir),
                              id=run_id, resume="allow", name=run_dir.name, config=config)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log({tag_of(name): value for name, value in values.items()}, step=step)

    def image(self, tag: str, image_uint8: torch.Tensor, step: int) -> None:
        pixels = image_uint8.permute(1, 2, 0).numpy()  # H x W x C
        self.run.log({tag: self.wandb.Image(pixels[..., 0] if pixels.shape[2] == 1 else pixels)},
                     step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.run.log({tag: self.wandb.Html(f"<p>{text}</p>")}, step=step)

    def close(self) -> None:
        self.run.finish()
