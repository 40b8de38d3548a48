"""Fine-tuning: init_from starts a new run from another run's weights (optionally its Adam
moments), freeze_d keeps D's first blocks fixed, and another architecture is refused."""

from __future__ import annotations

import pytest
import torch

from dcgan.config import validate
from dcgan.errors import DCGANError
from dcgan.nets.models import Architecture, build_models, freeze_first_blocks
from dcgan.store.checkpoints import load_checkpoint
from tests.conftest import TINY, user_error_line

QUICK = [*TINY, "epochs=1", "eval.every=0"]


def test_freeze_d_fixes_the_first_blocks_only():
    _, discriminator = build_models(Architecture(nz=8, ngf=8, ndf=8, channels=1, image_size=64))
    trainable = freeze_first_blocks(discriminator, 2)
    convolutions = [m for m in discriminator.main if isinstance(m, torch.nn.Conv2d)]
    assert [c.weight.requires_grad for c in convolutions] == [False, False, True, True, True]
    frozen_norm = discriminator.main[3]  # the BatchNorm of the second block
    assert isinstance(frozen_norm, torch.nn.BatchNorm2d) and not frozen_norm.weight.requires_grad
    assert len(trainable) == sum(p.requires_grad for p in discriminator.parameters())


@pytest.mark.slow
def test_init_from_and_freeze_d(cli, tmp_path, make_config):
    source = tmp_path / "source"
    cli("dcgan-train", *QUICK, "ema.decay=0.9", f"hydra.run.dir={source}", check=True)
    tuned = tmp_path / "tuned"
    result = cli("dcgan-train", *QUICK, "dataset=digits", "ema.decay=0.9",
                 f"init_from={source}", "freeze_d=2", f"hydra.run.dir={tuned}", check=True)
    assert "starting from the weights of" in result.stdout + result.stderr
    before = load_checkpoint(source / "checkpoints" / "last.pt")
    after = load_checkpoint(tuned / "checkpoints" / "last.pt")
    assert after["step"] == 4 and after["epoch"] == 1  # fresh counters: one epoch of its own
    d_before, d_after = before["discriminator"], after["discriminator"]
    for name in ("main.0.weight", "main.2.weight", "main.3.weight", "main.3.bias"):
        assert torch.equal(d_before[name], d_after[name]), name  # frozen blocks 1 and 2
    assert not torch.equal(d_before["main.5.weight"], d_after["main.5.weight"])  # block 3 trains
    assert not torch.equal(before["generator"]["main.0.weight"],
                           after["generator"]["main.0.weight"])
    # it started from the source's G: with a learning rate too small to move anything, it
    # ends where the source ended (a run from scratch would end at its initial weights)
    still = tmp_path / "still"
    cli("dcgan-train", *QUICK, "dataset=digits", "lr=1e-12", f"init_from={source}",
        f"hydra.run.dir={still}", check=True)
    kept = load_checkpoint(still / "checkpoints" / "last.pt")["generator"]["main.0.weight"]
    assert torch.allclose(kept, before["generator"]["main.0.weight"], atol=1e-9)
    assert not torch.allclose(kept, after["generator"]["main.0.weight"], atol=1e-9)

    other = cli("dcgan-train", *QUICK, "model.ngf=16", f"init_from={source}",
                f"hydra.run.dir={tmp_path / 'other'}")
    error = user_error_line(other)
    assert "init_from=" in error and "ngf 8 (checkpoint) vs 16 (config)" in error


@pytest.mark.slow
def test_init_from_optim_brings_adams_moments(cli, tmp_path):
    source = tmp_path / "source"
    cli("dcgan-train", *QUICK, f"hydra.run.dir={source}", check=True)
    with_moments = tmp_path / "moments"
    cli("dcgan-train", *QUICK, f"init_from={source}", "init_from_optim=true",
        f"hydra.run.dir={with_moments}", check=True)
    state = load_checkpoint(with_moments / "checkpoints" / "last.pt")
    steps = [s["step"] for s in state["opt_g"]["state"].values()]
    assert all(float(step) == 8.0 for step in steps)  # 4 from the source, 4 of its own
    without = tmp_path / "without"
    cli("dcgan-train", *QUICK, f"init_from={source}", f"hydra.run.dir={without}", check=True)
    state = load_checkpoint(without / "checkpoints" / "last.pt")
    assert all(float(s["step"]) == 4.0 for s in state["opt_g"]["state"].values())


def test_freeze_d_range_is_checked(make_config):
    with pytest.raises(DCGANError, match="freeze_d must be 0..4"):
        validate(make_config("freeze_d=5"))
    validate(make_config("freeze_d=4"))
