"""Checkpoints written before the trainer redesign still work: tests/data/legacy/ holds one
written by commit 7642f76 (digits at 32x32, ngf=ndf=8, nz=16, EMA on, one epoch):

    dcgan-train model.ngf=8 model.ndf=8 model.nz=16 batch_size=16 dataset.limit=64 log_every=1 \
        device=cpu cpu_threads=1 dataset.image_size=32 epochs=1 ema.decay=0.9 ema.start_step=1 \
        eval.n_samples=32
"""

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import run_cli

LEGACY = Path(__file__).resolve().parent / "data" / "legacy" / "digits32_ngf8_7642f76.pt"

pytestmark = pytest.mark.slow


@pytest.fixture
def legacy_run(tmp_path) -> Path:
    """A run directory holding the old checkpoint as its last.pt."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(LEGACY, run_dir / "checkpoints" / "last.pt")
    return run_dir


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_continues_the_old_run(legacy_run):
    old = load(legacy_run / "checkpoints" / "last.pt")
    run_cli("dcgan-train", f"resume={legacy_run}", "epochs=2", check=True)
    new = load(legacy_run / "checkpoints" / "last.pt")
    assert (new["epoch"], new["step"]) == (2, 8)
    assert not torch.equal(new["generator"]["main.0.weight"], old["generator"]["main.0.weight"])
    assert (legacy_run / "samples" / "epoch_002.png").is_file()


def test_sample_reads_the_old_checkpoint(legacy_run, tmp_path):
    out = tmp_path / "grid.png"
    run_cli("dcgan-sample", "--ckpt", str(legacy_run), "--n", "4", "--out", str(out), check=True)
    with Image.open(out) as image:
        assert image.mode == "L" and image.size == (2 + 2 * 34, 2 + 2 * 34)  # 2x2 of 32 px


def test_eval_reads_the_old_checkpoint(legacy_run):
    result = run_cli("dcgan-eval", "--ckpt", str(legacy_run), "--n", "32", check=True)
    assert '"swd/mean"' in result.stdout and '"epoch": 1' in result.stdout


def test_export_reads_the_old_checkpoint(legacy_run, tmp_path):
    out = tmp_path / "generator.pt"
    run_cli("dcgan-export", "--ckpt", str(legacy_run), "--format", "torchscript",
            "--out", str(out), check=True)
    scripted = torch.jit.load(str(out))
    images = scripted(torch.randn(3, 16, 1, 1))
    assert images.shape == (3, 1, 32, 32) and images.abs().max() <= 1
