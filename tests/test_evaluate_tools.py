"""dcgan-eval without a checkpoint (--real DIR --fake DIR) and its memorisation check
(--nearest K)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.data import TensorImages
from dcgan.evaluation import nearest_real
from tests.conftest import user_error_line


def write_folder(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for index, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return folder


def blobs(n: int, seed: int) -> np.ndarray:
    """n RGB 64x64 images: a bright square at a random place on a dark ground."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 64, 64, 3), 20, dtype=np.uint8)
    for image in images:
        y, x = rng.integers(0, 40, size=2)
        image[y : y + 24, x : x + 24] = rng.integers(120, 255, size=3)
    return images


def metrics_of(result) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_folders_compared_without_a_checkpoint(cli, tmp_path):
    real = write_folder(tmp_path / "real", blobs(48, seed=0))
    twin = write_folder(tmp_path / "twin", blobs(48, seed=0))
    flat = write_folder(tmp_path / "flat", np.full((48, 64, 64, 3), 90, dtype=np.uint8))
    same = metrics_of(cli("dcgan-eval", "--real", str(real), "--fake", str(twin)))
    other = metrics_of(cli("dcgan-eval", "--real", str(real), "--fake", str(flat)))
    assert same["n"] == 48 and same["fake"] == str(twin)
    assert same["swd/mean"] < 1e-6 and same["precision"] == 1.0 and same["recall"] == 1.0
    assert other["swd/mean"] > 10 and other["recall"] < 0.1 and other["diversity"] < 0.01
    error = user_error_line(cli("dcgan-eval", "--real", str(real)))
    assert "--real DIR --fake DIR" in error


def test_nearest_real_finds_the_copied_image():
    rng = torch.Generator().manual_seed(0)
    images = (torch.rand(300, 3, 16, 16, generator=rng) * 255).to(torch.uint8)
    dataset = TensorImages(images)
    copies = torch.stack([dataset[123], dataset[7]])
    indices, distances = nearest_real(copies, dataset, k=3, batch_size=64)  # across batches
    assert indices[:, 0].tolist() == [123, 7]
    assert distances[:, 0].tolist() == [0.0, 0.0]
    assert bool((distances[:, 1] > 0).all()) and bool((distances[:, 1:] >= distances[:, :-1]).all())


@pytest.mark.slow
def test_the_memorisation_grid(cli, trained_run, tmp_path):
    out = tmp_path / "nearest.png"
    result = cli("dcgan-eval", "--ckpt", str(trained_run), "--n", "32", "--nearest", "3",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    grid = Image.open(out)
    assert grid.size == (6 * 66 + 2, 3 * 66 + 2)  # a sample and its 5 nearest, 3 rows
    assert "nearest training images" in result.stderr
