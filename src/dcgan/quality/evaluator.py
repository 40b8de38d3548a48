"""Quality of a generator against a fixed real subset: what training logs under metrics/ and
what `dcgan-eval` prints. The numbers themselves come from dcgan.quality.metrics.

The real subset, the latent noise and the metric's own randomness are all fixed by one seed,
so two evaluations differ only because the generator did. With FID on, the Inception network
is loaded once per evaluator and the real subset's features are computed once: kept in memory
and, given a cache file, on disk (a resumed run or a later dcgan-eval reads them back).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from dcgan.errors import DCGANError
from dcgan.files.atomic import atomic_path
from dcgan.files.images import to_uint8
from dcgan.data.labels import Labels
from dcgan.nets.conditioning import LabelSpace
from dcgan.quality.classifier import (
    TrainedClassifier,
    attribute_accuracy,
    class_shares,
    classifier_for,
    data_fingerprint,
    gan_test_accuracy,
    share_ratio,
)
from dcgan.nets.models import in_mode
from dcgan.quality.metrics import (
    compute_metrics,
    diversity_ratio,
    extract_features,
    flatten_small,
    inception_weights_path,
    load_inception,
)

log = logging.getLogger(__name__)

GENERATE_BATCH = 256
FEATURE_CACHE_DIR = "eval_cache"  # in the run directory


def classifier_cache_path(run_dir: Path, dataset_cfg: Any, kind: str) -> Path:
    """Where a run keeps the label classifier of its real images (`kind` class or attributes),
    named by what fixes them; the file also records a digest of the very images it learnt."""
    name = (f"classifier-{kind}-{dataset_cfg.name}-{dataset_cfg.split}-"
            f"{dataset_cfg.image_size}px.pt")
    return run_dir / FEATURE_CACHE_DIR / name


def feature_cache_path(run_dir: Path, dataset_cfg: Any, eval_cfg: Any) -> Path:
    """Where a run keeps its real subset's Inception features, named by what fixes the subset
    (the dataset config's name, split and image size; the eval config's count and seed)."""
    name = (f"inception-{dataset_cfg.name}-{dataset_cfg.split}-{dataset_cfg.image_size}px-"
            f"n{eval_cfg.n_samples}-seed{eval_cfg.seed}.pt")
    return run_dir / FEATURE_CACHE_DIR / name


def real_subset(dataset: Dataset, n: int, seed: int) -> torch.Tensor:
    """n real images (fewer if the data set is smaller) from a seeded permutation; unreadable
    files are passed over."""
    return real_subset_indexed(dataset, n, seed)[0]


def real_subset_indexed(dataset: Dataset, n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """`real_subset`, and the indices of its images in the data set."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    images: list[torch.Tensor] = []
    indices: list[int] = []
    for index in order.tolist():
        item = dataset[index]
        if isinstance(item, torch.Tensor):  # an unreadable file comes back as (None, path)
            images.append(item)
            indices.append(index)
        if len(images) == n:
            break
    if len(images) < 2:
        raise DCGANError("fewer than two readable images to evaluate against")
    return torch.stack(images), indices


class Evaluator:
    """Compares a generator's samples with the same real images every time it is called.

    A conditional generator is asked for the labels of the real subset (a data set built with
    labels), so its samples are compared with real images of the same classes or attributes.
    Given a `label_classifier` file, a data set with labels is also scored by a classifier of
    its real images (trained once, cached there): GAN-test accuracy of a conditional
    generator's samples at their labels, or the class shares of an unconditional one."""

    def __init__(self, dataset: Dataset, n_samples: int, nz: int, seed: int,
                 device: torch.device, fid: bool = False,
                 inception_weights: Optional[str] = None, feature_cache: Optional[Path] = None,
                 label_classifier: Optional[Path] = None):
        self.real, indices = real_subset_indexed(dataset, n_samples, seed)
        self.n = self.real.shape[0]  # as many generated as real images
        labels = getattr(dataset, "labels", None)  # a data set built with labels
        self.real_labels = labels.take(indices) if labels is not None else None
        self.dataset, self.classifier_path = dataset, label_classifier
        self._classifier: Optional[TrainedClassifier] = None
        self.noise = torch.randn(self.n, nz, 1, 1, generator=torch.Generator().manual_seed(seed))
        self.seed, self.device = seed, device
        self.fid, self.inception_weights = fid, inception_weights
        self.feature_cache = feature_cache
        self._inception: Optional[nn.Module] = None  # loaded by the first FID evaluation
        self._real_features: Optional[torch.Tensor] = None  # N x 2048, computed once
        if self.n < n_samples:
            log.info("evaluating on all %d images of the data set (eval.n_samples=%d)",
                     self.n, n_samples)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        fake = self.generate(generator)
        if not self.fid:
            metrics = compute_metrics(self.real, fake, seed=self.seed)
        else:
            metrics = compute_metrics(self.real, fake, seed=self.seed, fid=True,
                                      feature_extractor=self.inception(),
                                      real_features=self.real_features(), device=self.device)
        if self.real_labels is not None and self.classifier_path is not None:
            metrics.update(label_metrics(self.classifier(), fake, self.real, self.real_labels,
                                         conditional=self.label_vectors(generator) is not None))
        return metrics

    def classifier(self) -> TrainedClassifier:
        """The label classifier of the data set's real images: cached, else trained now."""
        if self._classifier is None:
            images, labels = labelled_images(self.dataset)
            self._classifier = classifier_for(self.classifier_path,
                                              data_fingerprint(images, labels), images, labels)
            log.info("label classifier: %.4f accurate on %d held-out real images",
                     self._classifier.held_out_accuracy, self._classifier.held_out_count)
        return self._classifier

    def inception(self) -> nn.Module:
        """The FID Inception network, loaded on first use and kept."""
        if self._inception is None:
            self._inception = load_inception(self.inception_weights).to(self.device)
        return self._inception

    def real_features(self) -> torch.Tensor:
        """The real subset's Inception features: from memory, else the cache file, else
        computed (and written to the cache file)."""
        if self._real_features is None:
            self._real_features = self._read_feature_cache()
        if self._real_features is None:
            self._real_features = extract_features(self.real, self.inception())
            self._write_feature_cache(self._real_features)
        return self._real_features

    def _fingerprint(self) -> dict[str, str]:
        """What the cached features must have been computed from: these very images (their
        uint8 bytes) and the same weights file (its name and size)."""
        weights = inception_weights_path(self.inception_weights)
        images = hashlib.sha256(to_uint8(self.real).numpy().tobytes()).hexdigest()
        return {"images": images, "weights": f"{weights.name}:{weights.stat().st_size}"}

    def _read_feature_cache(self) -> Optional[torch.Tensor]:
        path = self.feature_cache
        if path is None or not path.is_file():
            return None
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            features, fingerprint = cached["features"], cached["fingerprint"]
        except Exception as error:  # torn, foreign or from another version: computed again
            log.warning("ignoring the cached Inception features %s (%s: %s); computing them "
                        "again", path, type(error).__name__, error)
            return None
        if fingerprint != self._fingerprint() or features.shape[0] != self.n:
            log.warning("the cached Inception features %s belong to other images or weights; "
                        "computing them again", path)
            return None
        log.info("read the real images' Inception features from %s", path)
        return features

    def _write_feature_cache(self, features: torch.Tensor) -> None:
        if self.feature_cache is None:
            return
        try:
            with atomic_path(self.feature_cache) as tmp:
                torch.save({"features": features, "fingerprint": self._fingerprint()}, tmp)
        except DCGANError as error:  # a cache that cannot be written only costs time
            log.warning("could not cache the Inception features: %s", error)

    def label_vectors(self, generator: nn.Module) -> Optional[torch.Tensor]:
        """What a conditional generator is asked for: the real subset's labels as vectors."""
        arch = getattr(generator, "arch", None)
        if arch is None or not arch.conditional:
            return None
        if self.real_labels is None or self.real_labels.kind != arch.condition:
            raise DCGANError(f"evaluating a generator conditioned on {arch.condition} needs "
                             f"the data set's {arch.condition} labels")
        space = LabelSpace(self.real_labels.kind, self.real_labels.names)
        return space.vectors(self.real_labels.values)

    @torch.no_grad()
    def generate(self, generator: nn.Module) -> torch.Tensor:
        """G(fixed noise [, the real subset's labels]) in eval mode (BatchNorm running
        statistics), on the CPU, float32."""
        y = self.label_vectors(generator)
        with in_mode(generator, training=False):
            parts = []
            for i in range(0, self.n, GENERATE_BATCH):
                noise = self.noise[i : i + GENERATE_BATCH].to(self.device)
                out = (generator(noise) if y is None
                       else generator(noise, y[i : i + GENERATE_BATCH].to(self.device)))
                parts.append(out.float().cpu())
        return torch.cat(parts)


CLASSIFIER_IMAGES = 50_000  # at most this many real images train the label classifier


def labelled_images(dataset: Dataset, limit: int = CLASSIFIER_IMAGES
                    ) -> tuple[torch.Tensor, Labels]:
    """The readable images of a data set built with labels (uint8; a seeded sample of `limit`
    of them when there are more) and their labels."""
    labels = getattr(dataset, "labels")
    picks = range(len(dataset))
    if len(dataset) > limit:
        picks = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit]
        picks = sorted(picks.tolist())
    decoded = getattr(dataset, "decoded", None)
    if callable(decoded):
        return decoded()[list(picks)], labels.take(list(picks))
    images, kept = [], []
    for index in picks:
        item = dataset[index]
        if isinstance(item, torch.Tensor):  # an unreadable file comes back as (None, path)
            images.append(to_uint8(item))
            kept.append(index)
    return torch.stack(images), labels.take(kept)


def per_class_diversity(fake: torch.Tensor, real: torch.Tensor, requested: Labels
                        ) -> dict[str, float]:
    """`diversity/NAME`: each class's diversity ratio, its samples against the real images of
    that class (a class that collapses alone shows here, not in the overall ratio)."""
    ratios = {}
    for class_id, name in enumerate(requested.names):
        chosen = requested.values == class_id
        if int(chosen.sum()) >= 2:
            ratios[f"diversity/{name}"] = diversity_ratio(fake[chosen], real[chosen])
    return ratios


def label_metrics(trained: TrainedClassifier, fake: torch.Tensor, real: torch.Tensor,
                  requested: Labels, conditional: bool) -> dict[str, float]:
    """What the label classifier reads of the samples: a conditional generator's accuracy at
    the labels asked of it (classes: `class/accuracy`; attributes: `attr/NAME` and their mean
    `attr/mean`); an unconditional one's class shares (`class/share_ratio`, max over min, and
    the smallest and largest share)."""
    if requested.kind == "attributes":
        if not conditional:
            return {}
        accuracy = attribute_accuracy(trained, fake, requested.values)
        return {**{f"attr/{name}": value for name, value in accuracy.items()},
                "attr/mean": sum(accuracy.values()) / len(accuracy)}
    if conditional:
        return {"class/accuracy": gan_test_accuracy(trained, fake, requested.values),
                **per_class_diversity(fake, real, requested)}
    shares = class_shares(trained, fake)
    return {"class/share_ratio": share_ratio(shares), "class/share_min": min(shares.values()),
            "class/share_max": max(shares.values())}


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
