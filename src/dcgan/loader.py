"""Batches for the loop: an epoch order drawn from (seed, epoch) alone, collation that passes
over unreadable files, worker counts, and the DataLoader built from them.

A resumed run sees exactly the batches an uninterrupted one would: the order never touches
torch's global RNG, and `EpochShuffle.set_epoch` can start in the middle of an epoch.
"""

from __future__ import annotations

import itertools
import os
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dcgan.errors import DCGANError
from dcgan.runtime import ignore_stop_signals


class EpochShuffle(DistributedSampler):
    """A fresh permutation each epoch, drawn from (seed, epoch) alone; under torchrun each rank
    takes its own disjoint share of it (this is torch's DistributedSampler).

    The order never touches torch's global RNG, so resuming at any epoch (or batch, via
    `start_index`) reproduces exactly the order an uninterrupted run would have used.
    """

    def __init__(self, length: int, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        super().set_epoch(epoch)
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start_index, None)

    def __len__(self) -> int:
        return super().__len__() - self.start_index


def batches_per_epoch(n_images: int, batch_size: int, num_replicas: int = 1) -> int:
    """One rank's full batches in an epoch (the last partial batch is dropped), at least 1."""
    return max((n_images // num_replicas) // batch_size, 1)


def collate_images(items: list | torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Stack the readable images of a batch; return the paths of those that could not be read.
    A batch fetched whole (a data set's __getitems__) is already one tensor."""
    if isinstance(items, torch.Tensor):
        return items, []
    images = [item for item in items if isinstance(item, torch.Tensor)]
    bad_paths = [item[1] for item in items if not isinstance(item, torch.Tensor)]
    if not images:
        return torch.empty(0), bad_paths
    return torch.stack(images), bad_paths


def default_workers(dataset: Dataset, feeds_gpu: bool = False) -> int:
    """Image files: decode in workers, leaving one core for the training step. Data in memory
    (or memory-mapped) has nothing to decode: the main process fetches each batch between CPU
    steps, but a GPU step is over before that, so two workers prepare the next batches then."""
    cores = os.cpu_count() or 2
    if not getattr(dataset, "decodes_files", False):
        return max(1, min(2, cores - 1)) if feeds_gpu else 0
    return max(1, min(4, cores - 1))


def build_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: Optional[int],
                 pin_memory: bool = False, num_replicas: int = 1, rank: int = 0
                 ) -> tuple[DataLoader, EpochShuffle]:
    """A loader of full batches (the last partial batch is dropped: BatchNorm needs a batch).

    Under torchrun, batch_size is per process: each step consumes num_replicas x batch_size.
    """
    if len(dataset) < batch_size * num_replicas:
        raise DCGANError(f"the data set has {len(dataset)} images, fewer than batch_size="
                         f"{batch_size} x {num_replicas} process(es); lower batch_size or add "
                         "images")
    workers = default_workers(dataset, pin_memory) if num_workers is None else num_workers
    sampler = EpochShuffle(len(dataset), seed, num_replicas, rank)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
        # the loader's own seed for worker processes comes from here, not the global RNG
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


def release_workers(loader: DataLoader) -> None:
    """Stop a DataLoader's worker processes (kept alive across epochs) now, as training ends,
    rather than at interpreter exit, where a torchrun process was seen waiting on its worker
    forever."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
