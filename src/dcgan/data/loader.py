"""Batches for the loop: an epoch order drawn from (seed, epoch) alone, collation that passes
over unreadable files, worker counts, and the DataLoader built from them; or, for decoded images
that fit, the device feed: the whole data set in device memory, each batch gathered there.

A data set built with labels (dcgan.data.labels) is fed with them: every batch is
(images, label values, unreadable paths), the labels of unreadable images dropped with them;
without labels the middle item is None.

A resumed run sees exactly the batches an uninterrupted one would: the order never touches
torch's global RNG, and `EpochShuffle.set_epoch` can start in the middle of an epoch. Both
feeds follow the same order, so switching between them changes no batch.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Iterator, NamedTuple, Optional, Protocol, Union

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dcgan.errors import DCGANError
from dcgan.files.images import to_signed_unit
from dcgan.runtime.distributed import SINGLE, Distributed
from dcgan.runtime.process import ignore_stop_signals

log = logging.getLogger(__name__)


class FeedSettings(Protocol):
    """What the feed reads of the loop's settings (training's LoopSettings has these)."""

    batch_size: int
    seed: int
    num_workers: Optional[int]
    data_on_device: Any
    data_on_device_fraction: float


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


class LabelledItem(NamedTuple):
    """One readable image and its label value (a class id, or a row of attributes)."""

    image: torch.Tensor
    label: torch.Tensor


class WholeBatch(NamedTuple):
    """A batch fetched at once (a data set's __getitems__): images and their label values."""

    images: torch.Tensor
    labels: torch.Tensor


class LabelledImages(Dataset):
    """A data set's images paired with their label values, in its order."""

    def __init__(self, dataset: Dataset, values: torch.Tensor):
        self.dataset, self.values = dataset, values
        self.decodes_files = getattr(dataset, "decodes_files", False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]  # an image, or (None, path) for an unreadable file
        return LabelledItem(item, self.values[index]) if isinstance(item, torch.Tensor) else item

    def __getitems__(self, indices: list[int]) -> Any:
        fetch_all = getattr(self.dataset, "__getitems__", None)
        if fetch_all is None:
            return [self[index] for index in indices]
        return WholeBatch(fetch_all(indices), self.values[torch.as_tensor(indices)])


def collate_batch(items: Any) -> tuple[torch.Tensor, Optional[torch.Tensor], list[str]]:
    """(the readable images stacked, their label values or None, the paths that could not be
    read). A batch fetched whole is already stacked."""
    if isinstance(items, WholeBatch):
        return items.images, items.labels, []
    if isinstance(items, torch.Tensor):
        return items, None, []
    readable = [item for item in items if isinstance(item, (LabelledItem, torch.Tensor))]
    bad_paths = [item[1] for item in items if not isinstance(item, (LabelledItem, torch.Tensor))]
    if not readable:
        return torch.empty(0), None, bad_paths
    if isinstance(readable[0], LabelledItem):
        return (torch.stack([item.image for item in readable]),
                torch.stack([item.label for item in readable]), bad_paths)
    return torch.stack(readable), None, bad_paths


def collate_images(items: list | torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Stack the readable images of a batch; return the paths of those that could not be read.
    A batch fetched whole (a data set's __getitems__) is already one tensor."""
    images, _, bad_paths = collate_batch(items)
    return images, bad_paths


def default_workers(dataset: Dataset, feeds_gpu: bool = False) -> int:
    """Image files: decode in workers, leaving one core for the training step. Data in memory
    (or memory-mapped) has nothing to decode: the main process fetches each batch between CPU
    steps, but a GPU step is over before that, so two workers prepare the next batches then."""
    cores = os.cpu_count() or 2
    if not getattr(dataset, "decodes_files", False):
        return max(1, min(2, cores - 1)) if feeds_gpu else 0
    return max(1, min(4, cores - 1))


def require_a_batch(n_images: int, batch_size: int, num_replicas: int) -> None:
    if n_images < batch_size * num_replicas:
        raise DCGANError(f"the data set has {n_images} images, fewer than batch_size="
                         f"{batch_size} x {num_replicas} process(es); lower batch_size or add "
                         "images")


def build_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: Optional[int],
                 pin_memory: bool = False, num_replicas: int = 1, rank: int = 0
                 ) -> tuple[DataLoader, EpochShuffle]:
    """A loader of full batches (the last partial batch is dropped: BatchNorm needs a batch).

    Under torchrun, batch_size is per process: each step consumes num_replicas x batch_size.
    """
    require_a_batch(len(dataset), batch_size, num_replicas)
    workers = default_workers(dataset, pin_memory) if num_workers is None else num_workers
    sampler = EpochShuffle(len(dataset), seed, num_replicas, rank)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_batch,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=ignore_stop_signals if workers > 0 else None,
        # the loader's own seed for worker processes comes from here, not the global RNG
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


class DeviceFeed:
    """The data set's decoded uint8 images copied to the device once; every batch is gathered
    and converted to [-1, 1] there, in the sampler's order: no loader workers and no
    host-to-device copy per step. Yields what the DataLoader yields: (images, label values or
    None, no bad paths)."""

    def __init__(self, images_uint8: torch.Tensor, batch_size: int, sampler: EpochShuffle,
                 device: torch.device, labels: Optional[torch.Tensor] = None):
        self.images = images_uint8.to(device)
        self.labels = labels.to(device) if labels is not None else None
        self.batch_size, self.sampler, self.device = batch_size, sampler, device

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor], list[str]]]:
        # the epoch's order goes to the device once; each batch is a slice of it
        order = torch.tensor(list(self.sampler), dtype=torch.long).to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            picks = order[start : start + self.batch_size]
            labels = self.labels.index_select(0, picks) if self.labels is not None else None
            yield to_signed_unit(self.images.index_select(0, picks)), labels, []


def decoded_images(dataset: Dataset) -> Optional[torch.Tensor]:
    """The data set as one uint8 N x C x S x S tensor when it holds its images decoded (in memory
    or in a memory-mapped cache), else None (image files decoded on the fly, generated ones)."""
    decoded = getattr(dataset, "decoded", None)
    return decoded() if callable(decoded) else None


def device_memory(device: torch.device) -> Optional[int]:
    """Bytes of memory on an accelerator; None for the CPU (whose memory holds the data already)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return None


def wants_device_feed(setting: Union[str, bool], images: Optional[torch.Tensor],
                      device: torch.device, fraction: float) -> bool:
    """data_on_device: true needs decoded images; auto takes the device feed on an accelerator
    when the images fill at most `fraction` of its memory, and the DataLoader on the CPU."""
    if setting is True:
        if images is None:
            raise DCGANError("data_on_device=true needs decoded images: mnist, mnist10k, digits, "
                             "or celeba/folder with dataset.cache=true")
        return True
    if setting is False or images is None:
        return False
    memory = device_memory(device)
    return memory is not None and images.numel() <= fraction * memory


def build_feed(dataset: Dataset, settings: FeedSettings, device: torch.device,
               layout: Distributed = SINGLE) -> tuple[Union[DataLoader, DeviceFeed], EpochShuffle]:
    """The batches of a run: the device feed where data_on_device asks for it, else a
    DataLoader; both with the same sampler (and so the same order), and both with the label
    values of a data set built with labels."""
    images = decoded_images(dataset)
    labels = getattr(dataset, "labels", None)
    values = labels.values if labels is not None else None
    if wants_device_feed(settings.data_on_device, images, device,
                         settings.data_on_device_fraction):
        require_a_batch(len(dataset), settings.batch_size, layout.world_size)
        sampler = EpochShuffle(len(dataset), settings.seed, layout.world_size, layout.rank)
        log.info("data on the device: %d images, %.0f MB on %s", images.shape[0],
                 images.numel() / 1e6, device)
        return DeviceFeed(images, settings.batch_size, sampler, device, values), sampler
    if values is not None:
        dataset = LabelledImages(dataset, values)
    return build_loader(dataset, settings.batch_size, settings.seed, settings.num_workers,
                        pin_memory=device.type == "cuda", num_replicas=layout.world_size,
                        rank=layout.rank)


def release_workers(loader: Union[DataLoader, DeviceFeed]) -> None:
    """Stop a DataLoader's worker processes (kept alive across epochs) now, as training ends,
    rather than at interpreter exit, where a torchrun process was seen waiting on its worker
    forever."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
