"""The replica check: under torchrun, every `every` steps all ranks must hold the same weights
(DistributedDataParallel's promise); a difference ends the run with a clear error."""

from __future__ import annotations

import logging

from dcgan.errors import DCGANError
from dcgan.runtime.distributed import (
    SINGLE,
    Distributed,
    gather_objects,
    weights_digest,
)
from dcgan.training.hooks.base import Hook, LoopView

log = logging.getLogger(__name__)


class ReplicaCheck(Hook):
    name = "replicas"

    def __init__(self, every: int, layout: Distributed = SINGLE):
        self.every, self.layout = every, layout

    def after_step(self, loop: LoopView) -> None:
        if not self.every or loop.step % self.every:
            return
        gan = loop.gan
        digests = gather_objects(
            (weights_digest(gan.generator), weights_digest(gan.discriminator)), self.layout)
        if any(digest != digests[0] for digest in digests):
            raise DCGANError(f"ranks disagree on the weights after step {loop.step}")
        log.info("step %d: weights identical on all %d ranks", loop.step, self.layout.world_size)
