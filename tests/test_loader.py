"""Batches: the epoch order, full batches, batch fetches, workers."""

import pytest
import torch

from dcgan.data import build_dataset
from dcgan.errors import DCGANError
from dcgan.loader import EpochShuffle, batches_per_epoch, build_loader, default_workers


def dataset_for(make_config, *overrides):
    return build_dataset(make_config(*overrides).dataset)


def test_shuffle_depends_only_on_seed_and_epoch():
    a, b = EpochShuffle(100, seed=1), EpochShuffle(100, seed=1)
    torch.manual_seed(123)
    a.set_epoch(3)
    order_a = list(a)
    torch.manual_seed(456)  # the global RNG does not matter
    b.set_epoch(3)
    assert list(b) == order_a
    assert sorted(order_a) == list(range(100))
    b.set_epoch(4)
    assert list(b) != order_a
    b.set_epoch(3, start_index=40)
    assert list(b) == order_a[40:]


def test_loader_batches_full_and_refuses_tiny_data(make_config):
    dataset = dataset_for(make_config, "dataset=fake", "dataset.size=40")
    loader, _ = build_loader(dataset, batch_size=16, seed=0, num_workers=0)
    batches = [images for images, _ in loader]
    assert len(batches) == 2 and all(b.shape == (16, 3, 64, 64) for b in batches)
    # in-memory images come a batch at a time (__getitems__): the same as image by image
    digits = dataset_for(make_config, "dataset.limit=64")
    loader, sampler = build_loader(digits, batch_size=16, seed=0, num_workers=0)
    sampler.set_epoch(0)
    order = list(sampler)
    first, _ = next(iter(loader))
    assert torch.equal(first, torch.stack([digits[i] for i in order[:16]]))
    # fetched in the training process on the CPU, by a worker ahead of a GPU
    assert default_workers(digits) == 0 and default_workers(digits, feeds_gpu=True) >= 1
    loader, sampler = build_loader(digits, batch_size=16, seed=0, num_workers=1)
    sampler.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], first)
    with pytest.raises(DCGANError, match="fewer than batch_size"):
        build_loader(dataset, batch_size=64, seed=0, num_workers=0)


def test_batches_per_epoch_is_what_the_loader_gives(make_config):
    dataset = dataset_for(make_config, "dataset=fake", "dataset.size=70")
    for batch, replicas in ((16, 1), (8, 3), (70, 1)):
        _, sampler = build_loader(dataset, batch, seed=0, num_workers=0, num_replicas=replicas)
        assert batches_per_epoch(len(dataset), batch, replicas) == sampler.num_samples // batch
