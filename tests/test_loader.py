"""Batches: the epoch order, full batches, batch fetches, workers."""

import pytest
import torch

from dcgan.data.datasets import build_dataset
from dcgan.data.loader import (
    EpochShuffle,
    batches_per_epoch,
    build_loader,
    default_workers,
)
from dcgan.errors import DCGANError


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
    batches = [images for images, _, _ in loader]
    assert len(batches) == 2 and all(b.shape == (16, 3, 64, 64) for b in batches)
    # in-memory images come a batch at a time (__getitems__): the same as image by image
    digits = dataset_for(make_config, "dataset.limit=64")
    loader, sampler = build_loader(digits, batch_size=16, seed=0, num_workers=0)
    sampler.set_epoch(0)
    order = list(sampler)
    first, _, _ = next(iter(loader))
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


# -- the device feed (data_on_device) -------------------------------------------------------------

def loader_batches(loader) -> list[torch.Tensor]:
    return [images for images, _, _ in loader]


@pytest.mark.parametrize("replicas", [1, 2])
def test_device_feed_gives_the_loaders_batches(make_config, replicas):
    from dcgan.data.loader import DeviceFeed, decoded_images

    dataset = build_dataset(make_config("dataset=digits", "dataset.limit=100").dataset)
    images = decoded_images(dataset)
    assert images.dtype == torch.uint8 and images.shape == (100, 1, 64, 64)
    for rank in range(replicas):
        loader, sampler = build_loader(dataset, 16, 3, 0, num_replicas=replicas, rank=rank)
        feed = DeviceFeed(images, 16, EpochShuffle(100, 3, replicas, rank), torch.device("cpu"))
        for epoch, start in [(0, 0), (4, 32)]:  # a later epoch, resumed after two batches
            sampler.set_epoch(epoch, start_index=start)
            feed.sampler.set_epoch(epoch, start_index=start)
            expected, fed = loader_batches(loader), loader_batches(feed)
            assert len(fed) == len(feed) == len(expected) == (100 // replicas - start) // 16
            for a, b in zip(expected, fed):
                assert torch.equal(a, b)  # same images, same order, same values


def test_device_feed_reads_the_decoded_cache(make_config, tmp_path):
    from dcgan.data.loader import DeviceFeed, decoded_images
    from tests.test_cache import make_images

    make_images(tmp_path / "images", n=12)
    cfg = make_config("dataset=folder", f"dataset.root={tmp_path / 'images'}",
                      "dataset.cache=true", f"dataset.cache_dir={tmp_path / 'cache'}")
    dataset = build_dataset(cfg.dataset)
    images = decoded_images(dataset)
    assert images.dtype == torch.uint8 and images.shape[0] == len(dataset)
    loader, sampler = build_loader(dataset, 4, 0, 0)
    feed = DeviceFeed(images, 4, EpochShuffle(len(dataset), 0), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(loader_batches(loader), loader_batches(feed)))


def test_data_on_device_chooses_and_refuses(make_config):
    from dcgan.data.loader import decoded_images, wants_device_feed

    cpu = torch.device("cpu")
    digits = decoded_images(build_dataset(make_config("dataset=digits").dataset))
    assert wants_device_feed(True, digits, cpu, 0.25)
    assert not wants_device_feed("auto", digits, cpu, 0.25)  # the CPU: the DataLoader
    assert not wants_device_feed(False, digits, cpu, 0.25)
    assert decoded_images(build_dataset(make_config("dataset=fake").dataset)) is None
    with pytest.raises(DCGANError, match="data_on_device=true needs decoded images"):
        wants_device_feed(True, None, cpu, 0.25)


@pytest.mark.slow
def test_training_from_the_device_feed_equals_the_loader(make_config, tmp_path, cli):
    """The whole run, interrupted and resumed on the feed, ends with the weights of a straight
    run on the DataLoader."""
    from dcgan.store.checkpoints import load_checkpoint
    from tests.conftest import TINY

    args = [*TINY, "dataset=digits", "epochs=2", "keep_last=0", "eval.every=0"]
    cli("dcgan-train", *args, "data_on_device=false", f"hydra.run.dir={tmp_path}/loader",
        check=True)
    cli("dcgan-train", *args, "epochs=1", "data_on_device=true", f"hydra.run.dir={tmp_path}/feed",
        check=True)
    cli("dcgan-train", f"resume={tmp_path}/feed", "epochs=2", check=True)
    straight = load_checkpoint(tmp_path / "loader" / "checkpoints" / "last.pt")
    fed = load_checkpoint(tmp_path / "feed" / "checkpoints" / "last.pt")
    assert fed["step"] == straight["step"] > 0
    for name, tensor in straight["generator"].items():
        assert torch.equal(tensor, fed["generator"][name]), name
    for name, tensor in straight["discriminator"].items():
        assert torch.equal(tensor, fed["discriminator"][name]), name


def test_data_on_device_takes_auto_true_or_false(make_config):
    from dcgan.config import validate

    for value in ("auto", "true", "false"):
        validate(make_config(f"data_on_device={value}"))
    with pytest.raises(DCGANError, match="data_on_device must be auto, true or false"):
        validate(make_config("data_on_device=maybe"))
