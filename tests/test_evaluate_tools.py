"""dcgan-eval without a checkpoint (--real DIR --fake DIR) and its memorisation check
(--nearest K)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.data.datasets import TensorImages
from dcgan.quality.evaluator import nearest_real
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


# -- FID: Inception once per run, the real features once per data set ---------------------------

class CountingFeatures(torch.nn.Module):
    """A stand-in for Inception (its weights are not on this machine): 12 pooled colour and
    edge features of uint8 RGB images, counting every image it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0
        self.conv = torch.nn.Conv2d(3, 12, 5, stride=2)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.conv.bias)  # every one loaded is the same network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8
        self.images_seen += len(images)
        return self.conv(images.float() / 255).relu().mean(dim=(2, 3))


@pytest.fixture
def fake_inception(monkeypatch, tmp_path):
    """dcgan.quality.evaluator loads CountingFeatures instead of Inception; returns the list of networks
    loaded and the (dummy) weights file to name."""
    loaded: list[CountingFeatures] = []

    def load(_weights=None):
        loaded.append(CountingFeatures())
        return loaded[-1]

    monkeypatch.setattr("dcgan.quality.evaluator.load_inception", load)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"a stand-in")
    return loaded, weights


def small_generator() -> torch.nn.Module:
    from dcgan.nets.models import Architecture, Generator

    torch.manual_seed(0)
    return Generator(Architecture(nz=16, ngf=8, ndf=8, channels=3, image_size=64))


def test_fid_features_of_the_real_images_are_computed_once_and_cached(fake_inception, tmp_path,
                                                                        caplog):
    from dcgan.quality.evaluator import Evaluator
    from dcgan.quality.metrics import compute_metrics

    loaded, weights = fake_inception
    dataset = TensorImages(torch.rand(40, 3, 64, 64) * 2 - 1)
    cache = tmp_path / "run" / "eval_cache" / "features.pt"
    generator = small_generator()

    def evaluator() -> Evaluator:
        return Evaluator(dataset, 32, 16, 7, torch.device("cpu"), fid=True,
                         inception_weights=str(weights), feature_cache=cache)

    first = evaluator()
    metrics = [first(generator), first(generator)]
    assert len(loaded) == 1  # Inception loaded once, for both evaluations
    assert loaded[0].images_seen == 32 + 2 * 32  # the real images once, the fakes each time
    assert metrics[0]["fid"] == metrics[1]["fid"] > 0
    direct = compute_metrics(first.real, first.generate(generator), seed=7, fid=True,
                             feature_extractor=loaded[0])  # no cache: what it must equal
    assert metrics[0]["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert metrics[0]["inception_recall"] == direct["inception_recall"]
    assert cache.is_file()

    second = evaluator()  # a resumed run: the real features come from the file
    assert second(generator)["fid"] == metrics[0]["fid"]
    assert loaded[1].images_seen == 32

    cache.write_bytes(cache.read_bytes()[:100])  # torn: computed again, and the file rewritten
    with caplog.at_level("WARNING"):
        assert evaluator()(generator)["fid"] == metrics[0]["fid"]
    assert "ignoring the cached Inception features" in caplog.text
    assert loaded[2].images_seen == 64

    other = Evaluator(dataset, 32, 16, 8, torch.device("cpu"), fid=True,  # other real images
                      inception_weights=str(weights), feature_cache=cache)
    other(generator)
    assert loaded[3].images_seen == 64 and "belong to other images" in caplog.text
    assert evaluator()(generator)["fid"] == metrics[0]["fid"]  # and back: computed again


def test_training_with_fid_loads_inception_once_and_keeps_the_features_in_the_run(
        fake_inception, make_config, tmp_path):
    from dcgan.cli.run import build_trainer
    from dcgan.config import validate
    from dcgan.data.datasets import build_dataset
    from tests.conftest import TINY

    loaded, weights = fake_inception
    cfg = make_config(*TINY, "epochs=2", "eval.every=1", "eval.n_samples=24", "eval.fid=true",
                      f"eval.inception_weights={weights}")
    validate(cfg)
    trainer = build_trainer(cfg, build_dataset(cfg.dataset), tmp_path, torch.device("cpu"))
    assert trainer.fit().finished
    assert len(loaded) == 1 and loaded[0].images_seen == 24 + 2 * 24  # two evaluations
    cached = list((tmp_path / "eval_cache").iterdir())
    assert [path.name for path in cached] == ["inception-mnist10k-test-64px-n24-seed1234.pt"]
    assert {"fid", "kid", "inception_precision"} <= set(trainer.epoch_metrics)
    # dcgan-eval on this run's checkpoints reads and writes the same file
    from dcgan.cli.evaluate import run_feature_cache

    assert run_feature_cache(tmp_path / "checkpoints" / "best.pt", cfg) == cached[0]
