"""The evaluation hook: the quality metrics of the sampling generator every `every` epochs
(and after the last), logged under metrics/ and published in loop.epoch_metrics for the
checkpoint hook (best.pt) and the collapse guard (diversity)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from dcgan.quality.evaluator import Evaluator
from dcgan.runtime.distributed import SINGLE, Distributed, broadcast_object
from dcgan.training.hooks.base import Answer, Hook, LoopView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    every: int = 1  # epochs between evaluations (and after the last); 0: never
    n_samples: int = 512
    fid: bool = False
    inception_weights: Optional[str] = None
    seed: int = 1234


class Evaluation(Hook):
    name = "evaluation"

    def __init__(self, settings: EvaluationSettings, dataset: Dataset, device: torch.device,
                 layout: Distributed = SINGLE, feature_cache: Optional[Path] = None,
                 label_classifier: Optional[Path] = None):
        self.settings, self.dataset, self.device, self.layout = settings, dataset, device, layout
        self.feature_cache = feature_cache  # the real subset's Inception features (FID on)
        self.label_classifier = label_classifier  # a labelled data set's classifier file
        self.evaluator: Optional[Evaluator] = None  # built on first use (reads real images)
        self.metrics: dict[str, float] = {}  # the newest evaluation

    def due(self, loop: LoopView) -> bool:
        every = self.settings.every
        return every > 0 and (loop.epoch % every == 0 or loop.epoch >= loop.settings.epochs)

    def on_epoch_end(self, loop: LoopView) -> Answer:
        if self.due(loop):
            self.metrics = self.evaluate(loop)
            loop.epoch_metrics.update(self.metrics)
        return None

    def evaluate(self, loop: LoopView) -> dict[str, float]:
        """Computed on rank 0, known to every rank."""
        metrics: dict[str, float] = {}
        if self.layout.is_main:
            started = time.perf_counter()
            metrics = self.evaluator_for(loop.gan.settings.arch.nz)(loop.gan.sampling_generator)
            loop.loggers.scalars(loop.step, {f"metrics/{key}": value
                                             for key, value in metrics.items()})
            log.info("epoch %d evaluation (%.1f s): %s", loop.epoch, time.perf_counter() - started,
                     ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))
        return broadcast_object(metrics, self.layout)

    def evaluator_for(self, nz: int) -> Evaluator:
        if self.evaluator is None:
            s = self.settings
            self.evaluator = Evaluator(self.dataset, s.n_samples, nz, s.seed, self.device,
                                       s.fid, s.inception_weights, self.feature_cache,
                                       self.label_classifier)
        return self.evaluator

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = dict(state.get("metrics", {}))
