"""Quality of a generator against a fixed real subset: what training logs under metrics/ and
what `dcgan-eval` prints. The numbers themselves come from dcgan.metrics.

The real subset, the latent noise and the metric's own randomness are all fixed by one seed,
so two evaluations differ only because the generator did.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from dcgan.errors import DCGANError
from dcgan.metrics import compute_metrics, flatten_small
from dcgan.models import in_mode

log = logging.getLogger(__name__)

GENERATE_BATCH = 256


def real_subset(dataset: Dataset, n: int, seed: int) -> torch.Tensor:
    """n real images (fewer if the data set is smaller) from a seeded permutation; unreadable
    files are passed over."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    images: list[torch.Tensor] = []
    for index in order.tolist():
        item = dataset[index]
        if isinstance(item, torch.Tensor):  # an unreadable file comes back as (None, path)
            images.append(item)
        if len(images) == n:
            break
    if len(images) < 2:
        raise DCGANError("fewer than two readable images to evaluate against")
    return torch.stack(images)


class Evaluator:
    """Compares a generator's samples with the same real images every time it is called."""

    def __init__(self, dataset: Dataset, n_samples: int, nz: int, seed: int,
                 device: torch.device, fid: bool = False,
                 inception_weights: Optional[str] = None):
        self.real = real_subset(dataset, n_samples, seed)
        self.n = self.real.shape[0]  # as many generated as real images
        self.noise = torch.randn(self.n, nz, 1, 1, generator=torch.Generator().manual_seed(seed))
        self.seed, self.device = seed, device
        self.fid, self.inception_weights = fid, inception_weights
        if self.n < n_samples:
            log.info("evaluating on all %d images of the data set (eval.n_samples=%d)",
                     self.n, n_samples)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        fake = self.generate(generator)
        return compute_metrics(self.real, fake, seed=self.seed, fid=self.fid,
                               inception_weights=self.inception_weights, device=self.device)

    @torch.no_grad()
    def generate(self, generator: nn.Module) -> torch.Tensor:
        """G(fixed noise) in eval mode (BatchNorm running statistics), on the CPU, float32."""
        with in_mode(generator, training=False):
            parts = [generator(self.noise[i : i + GENERATE_BATCH].to(self.device)).float().cpu()
                     for i in range(0, self.n, GENERATE_BATCH)]
        return torch.cat(parts)


NEAREST = 5  # real neighbours shown beside each sample by the memorisation check


@torch.no_grad()
def nearest_real(samples: torch.Tensor, dataset: Dataset, k: int = NEAREST,
                 batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, its k nearest training images (L2 on the images pooled to 32 x 32,
    the features of the diversity ratio): (N x k indices into the data set, N x k distances).
    The whole data set is searched, in batches."""
    wanted = flatten_small(samples)
    best_d = torch.full((len(samples), k), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((len(samples), k), dtype=torch.long)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        indices = [start + j for j, item in enumerate(items) if isinstance(item, torch.Tensor)]
        if not indices:
            continue
        reals = torch.stack([items[i - start] for i in indices])
        distances = torch.cdist(wanted.double(), flatten_small(reals).double(),
                                compute_mode="donot_use_mm_for_euclid_dist")  # a twin is 0
        merged_d = torch.cat([best_d, distances], dim=1)
        merged_i = torch.cat([best_i, torch.tensor(indices).expand(len(samples), -1)], dim=1)
        best_d, order = merged_d.topk(min(k, merged_d.shape[1]), dim=1, largest=False)
        best_i = merged_i.gather(1, order)
    return best_i, best_d


def format_table(metrics: dict[str, float]) -> str:
    """The metrics as an aligned two-column table, one per line."""
    width = max(len(name) for name in metrics)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in metrics.items())
