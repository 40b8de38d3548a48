import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.data.cache import CachedImages, cache_paths
from dcgan.data.datasets import build_dataset
from dcgan.data.loader import build_loader
from tests.conftest import TINY


def make_images(root, n=12, size=(90, 70), nested=True):
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for index in range(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        folder = root / "sub" if nested and index % 2 else root
        Image.fromarray(pixels).save(folder / f"{index:03d}.jpg", quality=90)


def datasets(make_config, *overrides):
    decoded = build_dataset(make_config(*overrides).dataset)
    cached = build_dataset(make_config(*overrides, "dataset.cache=true").dataset)
    return decoded, cached


@pytest.mark.parametrize("name,channels", [("folder", 1), ("folder", 3), ("celeba", 3)])
def test_cache_yields_exactly_the_decoded_tensors(make_config, tmp_path, name, channels):
    celeba = name == "celeba"
    make_images(tmp_path / "images", size=(178, 218) if celeba else (90, 70), nested=not celeba)
    overrides = [f"dataset={name}", f"dataset.root={tmp_path / 'images'}",
                 f"dataset.cache_dir={tmp_path / 'cache'}", f"dataset.channels={channels}"]
    decoded, cached = datasets(make_config, *overrides)
    assert isinstance(cached, CachedImages) and len(cached) == len(decoded) == 12
    for index in range(12):
        assert torch.equal(cached[index], decoded[index])
    # and the batches the loader fetches whole are those images, in the sampler's order
    loader, sampler = build_loader(cached, batch_size=4, seed=0, num_workers=0)
    sampler.set_epoch(0)
    order = list(sampler)
    for number, (batch, _, bad) in enumerate(loader):
        expected = torch.stack([decoded[i] for i in order[4 * number:4 * number + 4]])
        assert torch.equal(batch, expected) and bad == []


def test_cache_is_rebuilt_when_files_or_size_change(make_config, tmp_path):
    make_images(tmp_path / "images")
    overrides = ["dataset=folder", f"dataset.root={tmp_path / 'images'}",
                 f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.cache=true"]
    assert len(build_dataset(make_config(*overrides).dataset)) == 12
    array_path, manifest_path = cache_paths(make_config(*overrides).dataset)
    built = manifest_path.stat().st_mtime_ns

    assert len(build_dataset(make_config(*overrides).dataset)) == 12  # reused
    assert manifest_path.stat().st_mtime_ns == built

    Image.new("RGB", (80, 80)).save(tmp_path / "images" / "new.png")  # one more file
    assert len(build_dataset(make_config(*overrides).dataset)) == 13
    assert json.loads(manifest_path.read_text())["count"] == 13

    small = build_dataset(make_config(*overrides, "dataset.image_size=32").dataset)
    assert small[0].shape == (3, 32, 32)
    assert not list((tmp_path / "cache").glob(".*tmp*"))  # written atomically, nothing left


def test_cache_skips_unreadable_files(make_config, tmp_path):
    make_images(tmp_path / "images")
    (tmp_path / "images" / "zz_broken.jpg").write_bytes(b"not a jpeg")
    overrides = ["dataset=folder", f"dataset.root={tmp_path / 'images'}",
                 f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.cache=true"]
    cached = build_dataset(make_config(*overrides).dataset)
    assert len(cached) == 12
    _, manifest_path = cache_paths(make_config(*overrides).dataset)
    assert json.loads(manifest_path.read_text())["skipped"] == 1


def test_prepare_then_train_from_the_cache(cli, tmp_path):
    make_images(tmp_path / "images", n=32)
    data = ["dataset=folder", f"dataset.root={tmp_path / 'images'}",
            f"dataset.cache_dir={tmp_path / 'cache'}"]
    prepared = cli("dcgan-prepare", *data, check=True)
    assert "prepared 32 images" in prepared.stderr + prepared.stdout
    trained = cli("dcgan-train", *[a for a in TINY if not a.startswith("dataset.limit")], *data,
                  "dataset.cache=true", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
                  check=True)
    assert "cache: using" in trained.stdout + trained.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_prepare_refuses_in_memory_data(cli):
    result = cli("dcgan-prepare", "dataset=mnist")
    assert result.returncode == 2 and "already decoded in memory" in result.stderr
