"""Unreadable images: with dataset.on_bad_image=skip they are left out of their batch and
reported once per epoch; with error the first one ends the run with its path."""

from __future__ import annotations

import logging

from dcgan.errors import DCGANError
from dcgan.training.hooks.base import Answer, Hook, LoopView

log = logging.getLogger(__name__)


class BadFiles(Hook):
    name = "bad_files"

    def __init__(self, policy: str = "skip"):
        self.policy = policy
        self.skipped: list[str] = []  # this epoch's

    def on_batch(self, loop: LoopView, bad_paths: list[str]) -> None:
        if not bad_paths:
            return
        if self.policy == "error":
            raise DCGANError(f"cannot read image {bad_paths[0]} (dataset.on_bad_image=error; "
                             "use skip to train without it)")
        self.skipped.extend(bad_paths)

    def on_epoch_end(self, loop: LoopView) -> Answer:
        if self.skipped:
            log.warning("skipped %d unreadable image(s) this epoch, e.g. %s",
                        len(self.skipped), self.skipped[0])
            self.skipped = []
        return None
