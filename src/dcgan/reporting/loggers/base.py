"""The logger interface: scalars, images and text at a step, and `Loggers`, which sends each
call to every logger of the run (none at all on ranks other than 0 under torchrun).

Tags (documented in docs/watching.md):
  loss/d, loss/g           discriminator and generator losses
  loss/d_reg               reg.*: what the regularisers (LeCam, R1, bCR) add to D's loss
  lr/factor                lr_schedule=linear_tail: the factor on both learning rates
  d/real_prob              mean D(x) on real images (sigmoid of the logits)
  d/fake_prob              mean D(G(z)) on generated images, during the D step
  perf/img_per_s           real images consumed per second over the logging window
  augment/p, augment/rt    augment.p=ada: the augmentation probability, and E[sign(D(real))]
  samples/fixed            4x4 grid from one fixed noise tensor, once per epoch
  samples/real             a grid of real training images, once per run
  metrics/swd/<res>, metrics/swd/mean, metrics/diversity (and metrics/fid, metrics/kid)
                           quality of the samples at each evaluation (eval.every epochs)
  collapse                 text: what the collapse detector saw, and what it did
"""

from __future__ import annotations

from typing import Iterable

import torch

# The loop's metric names -> the tags users see.
SCALAR_TAGS = {
    "loss_d": "loss/d",
    "loss_g": "loss/g",
    "loss_reg": "loss/d_reg",
    "lr_factor": "lr/factor",
    "real_prob": "d/real_prob",
    "fake_prob": "d/fake_prob",
    "img_per_s": "perf/img_per_s",
    "augment_p": "augment/p",
    "real_sign": "augment/rt",
}


def tag_of(name: str) -> str:
    return SCALAR_TAGS.get(name, name)


class Logger:
    """One backend. Subclasses override what they support; the rest does nothing."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """`values` by metric name (loss_d, metrics/swd/mean, ...); see `tag_of`."""

    def image(self, tag: str, image_uint8: torch.Tensor, step: int) -> None:
        """One uint8 C x H x W image, e.g. a grid."""

    def text(self, tag: str, text: str, step: int) -> None:
        """A message, e.g. what the collapse guard did."""

    def close(self) -> None:
        """Flush everything to disk."""


class Loggers(Logger):
    """Every logger of the run, called in turn."""

    def __init__(self, loggers: Iterable[Logger] = ()):
        self.loggers = list(loggers)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.scalars(step, values)

    def image(self, tag: str, image_uint8: torch.Tensor, step: int) -> None:
        for logger in self.loggers:
            logger.image(tag, image_uint8, step)

    def text(self, tag: str, text: str, step: int) -> None:
        for logger in self.loggers:
            logger.text(tag, text, step)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
