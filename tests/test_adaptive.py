"""Issue 12's parts: augmentation with a probability and adapted to D (augment.p), mirrored
reals (dataset.mirror), a moving average with a half-life in images, and BatchNorm statistics
re-estimated for the generator that samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dcgan.cli.run import build_trainer
from dcgan.config import validate
from dcgan.data.datasets import build_dataset
from dcgan.errors import DCGANError
from dcgan.nets.augment import AdaSettings, diff_augment, mirror
from dcgan.nets.batchnorm import batchnorm_state, recalibrate_batchnorm
from dcgan.nets.ema import EMA
from dcgan.nets.models import Architecture, Generator, build_models
from dcgan.reporting.loggers import Loggers
from dcgan.reporting.loggers.csv import CSVLogger
from dcgan.store.checkpoints import load_checkpoint, load_generator
from dcgan.training.loop import Trainer
from tests.conftest import TINY

QUICK = [*TINY, "epochs=2", "eval.every=0"]  # 64 digits, batch 16: 4 steps an epoch


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 400, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=seeded(seed)) * 2 - 1


# -- augment.p ---------------------------------------------------------------------------------

def test_p_one_is_what_augmentation_always_did():
    images = batch(32)
    assert torch.equal(diff_augment(images, "translation,cutout", seeded(3), p=1.0),
                       diff_augment(images, "translation,cutout", seeded(3)))


def test_p_zero_draws_nothing_and_changes_nothing():
    images, rng = batch(32), seeded(3)
    before = rng.get_state()
    assert diff_augment(images, "color,translation,cutout", rng, p=0.0) is images
    assert torch.equal(rng.get_state(), before)


def test_p_is_the_share_of_images_each_operation_changes():
    images = batch(2000)
    shifted = diff_augment(images, "translation", seeded(1), p=0.3)
    changed = (shifted != images).flatten(1).any(dim=1).float().mean().item()
    # translation leaves an image as it is when it draws a zero shift both ways (1/25 of
    # the time at 16 px, shifts of -2..2), so about 0.3 * 24/25 of them change
    assert abs(changed - 0.3 * 24 / 25) < 0.04
    untouched = ~(shifted != images).flatten(1).any(dim=1)
    assert torch.equal(shifted[untouched], images[untouched])  # the rest are the originals


def test_ada_moves_p_towards_keeping_d_honest():
    ada = AdaSettings(target=0.6, interval=4, speed_images=1000)
    assert ada.next_p(0.5, rt=0.9, images_per_step=25) == pytest.approx(0.6)  # D overfits
    assert ada.next_p(0.5, rt=0.2, images_per_step=25) == pytest.approx(0.4)
    assert ada.next_p(0.5, rt=0.6, images_per_step=25) == 0.5
    assert ada.next_p(0.95, rt=1.0, images_per_step=25) == 1.0  # clamped
    assert ada.next_p(0.05, rt=-1.0, images_per_step=25) == 0.0
    p = 0.0
    for _ in range(10):  # 10 adjustments x 4 steps x 25 images = speed_images: 0 to 1
        p = ada.next_p(p, rt=1.0, images_per_step=25)
    assert p == pytest.approx(1.0)


def make_trainer(make_config, run_dir: Path, *overrides: str) -> Trainer:
    cfg = make_config(*QUICK, *overrides)
    validate(cfg)
    torch.manual_seed(0)
    return build_trainer(cfg, build_dataset(cfg.dataset), run_dir, torch.device("cpu"))


ADA = ["augment=[translation,cutout]", "augment.p=ada", "augment.interval=1",
       "augment.speed_images=160", "augment.target=0.0"]  # D is sure of the reals at once


def test_ada_raises_p_logs_it_and_resumes_exactly(make_config, tmp_path):
    straight = make_trainer(make_config, tmp_path / "straight", *ADA)
    straight.loggers = Loggers([CSVLogger(tmp_path / "straight")])
    assert straight.fit().finished
    ada = straight.hooks[[h.name for h in straight.hooks].index("augment")]
    assert 0 < ada.p <= 1 and straight.gan.settings.augment_p == ada.p  # the pair follows p
    rows = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"augment/p", "augment/rt"} <= set(header)
    p_logged = [float(row.split(",")[header.index("augment/p")]) for row in rows[1:]]
    assert p_logged[0] < p_logged[-1]  # rises while D is sure of the reals

    first = make_trainer(make_config, tmp_path / "resumed", *ADA, "epochs=1")
    first.fit()
    resumed = make_trainer(make_config, tmp_path / "resumed", *ADA)
    resumed.load_state_dict(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt"))
    resumed.fit()
    final, again = straight.state_dict(), resumed.state_dict()
    assert final["hooks"]["augment"] == again["hooks"]["augment"]
    for key in ("generator", "discriminator"):
        for name, tensor in final[key].items():
            assert torch.equal(tensor, again[key][name]), (key, name)


def test_ada_without_operations_is_refused(make_config):
    with pytest.raises(DCGANError, match="augment.p=ada adapts"):
        validate(make_config("augment.p=ada"))
    with pytest.raises(DCGANError, match="augment.p must be a number"):
        validate(make_config("augment.p=1.5"))


def test_the_old_list_form_still_works(make_config):
    cfg = make_config("augment=[color,cutout]")
    assert list(cfg.augment.ops) == ["color", "cutout"] and cfg.augment.p == 1.0


# -- dataset.mirror ----------------------------------------------------------------------------

def test_mirror_flips_about_half_the_images_and_nothing_else():
    images = batch(1000)
    mirrored = mirror(images, seeded(2))
    flipped = (mirrored == images.flip(3)).flatten(1).all(dim=1)
    kept = (mirrored == images).flatten(1).all(dim=1)
    assert bool((flipped | kept).all())
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_mirror_is_applied_to_the_reals_in_training(make_config, tmp_path, monkeypatch):
    seen = []
    import dcgan.training.pair as gan_module

    def spy(images, generator=None):
        seen.append(images.shape[0])
        return mirror(images, generator)

    monkeypatch.setattr(gan_module, "mirror", spy)
    make_trainer(make_config, tmp_path, "dataset.mirror=true", "epochs=1").fit()
    assert seen == [16, 16, 16, 16]


# -- EMA with a half-life in images ------------------------------------------------------------

def test_half_life_means_the_same_at_any_batch_size():
    net = torch.nn.Linear(2, 2)
    small, large = EMA(net, 0.0, half_life_images=1000), EMA(net, 0.0, half_life_images=1000)
    # 1000 images: ten steps of 100 or one step of 1000 leave half of the old average
    assert small.decay_at(50, 100) ** 10 == pytest.approx(0.5)
    assert large.decay_at(50, 1000) == pytest.approx(0.5)


def test_rampup_keeps_the_first_weights_from_lingering():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.0, half_life_images=10_000, rampup=0.05)
    assert ema.decay_at(1, 64) == pytest.approx(0.5 ** (64 / (64 * 0.05)))  # half-life 3.2
    assert ema.decay_at(10_000, 64) == pytest.approx(0.5 ** (64 / 10_000))  # ramp over


def test_half_life_and_decay_together_are_refused(make_config):
    with pytest.raises(DCGANError, match="not both"):
        validate(make_config("ema.decay=0.99", "ema.half_life_images=1000"))


# -- BatchNorm statistics of the sampling generator --------------------------------------------

def tiny_generator() -> Generator:
    torch.manual_seed(0)
    generator, _ = build_models(Architecture(nz=8, ngf=8, ndf=8, channels=1, image_size=32))
    return generator


def test_recalibration_matches_the_statistics_of_the_weights():
    generator = tiny_generator()
    for norm in (m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.fill_(3.0)  # statistics from other weights
        norm.running_var.fill_(9.0)
    rng_before = torch.get_rng_state()
    recalibrate_batchnorm(generator.eval(), nz=8, batches=8, batch_size=64)
    assert torch.equal(torch.get_rng_state(), rng_before)  # training's RNG untouched
    assert not generator.training  # left in the mode it was in
    noise = torch.randn(512, 8, 1, 1, generator=seeded(5))
    with torch.no_grad():
        in_eval = generator.eval()(noise)
        in_train = generator.train()(noise)
    assert (in_eval - in_train).abs().mean() < 0.02  # eval mode now behaves like the batches


def test_checkpoints_carry_the_recalibrated_statistics(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path, "ema.decay=0.9", "epochs=1")
    trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    sampling = trainer.gan.sampling_generator
    assert set(state["sampling_bn"]) == set(batchnorm_state(sampling))
    means = [name for name in state["sampling_bn"] if name.endswith("running_mean")]
    assert means and not any(torch.equal(state["sampling_bn"][name],
                                         state["generator_ema"][name]) for name in means)
    loaded = load_generator(tmp_path / "checkpoints" / "last.pt", torch.device("cpu"))
    noise = torch.randn(16, 16, 1, 1, generator=seeded(1))
    with torch.no_grad():
        assert torch.equal(loaded(noise), sampling(noise))  # dcgan-sample = training's samples
    raw = load_generator(tmp_path / "checkpoints" / "last.pt", torch.device("cpu"), ema=False)
    assert all(torch.equal(raw.state_dict()[name], state["generator"][name]) for name in means)


def test_recalibration_does_not_change_training(make_config, tmp_path):
    on = make_trainer(make_config, tmp_path / "on", "ema.recalibrate_bn=true")
    on.fit()  # (each trainer draws from the global RNG: build, then fit, one at a time)
    off = make_trainer(make_config, tmp_path / "off", "ema.recalibrate_bn=false")
    off.fit()
    for key in ("generator", "discriminator"):
        for name, tensor in on.gan.state_dict()[key].items():
            assert torch.equal(tensor, off.gan.state_dict()[key][name]), (key, name)
    assert math.isfinite(float(on.gan.sampling_generator(torch.zeros(2, 16, 1, 1)).sum()))
