"""The training step in-process: speed options change speed, not results."""

import pytest
import torch

from dcgan.data import build_dataset
from dcgan.errors import DCGANError
from dcgan.losses import generator_loss
from dcgan.runtime import seed_everything
from dcgan.trainer import Trainer
from tests.conftest import TINY

FAKE = [*TINY, "dataset=fake", "dataset.size=64"]


def make_trainer(make_config, tmp_path, *overrides) -> Trainer:
    cfg = make_config(*FAKE, *overrides)
    seed_everything(cfg.seed)
    return Trainer(cfg, build_dataset(cfg.dataset), tmp_path, torch.device("cpu"))


def losses(trainer: Trainer, steps: int = 3) -> list[float]:
    """loss_d, loss_g of each step, flattened: [d1, g1, d2, g2, ...]."""
    batches = torch.stack([trainer.dataset[i] for i in range(16 * steps)]).split(16)
    out = []
    for real in batches:
        metrics = trainer.train_step(real)
        out += [metrics["loss_d"].item(), metrics["loss_g"].item()]
    return out


def test_train_step_updates_both_networks(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path)
    g_before = [p.clone() for p in trainer.generator.parameters()]
    d_before = [p.clone() for p in trainer.discriminator.parameters()]
    metrics = trainer.train_step(torch.stack([trainer.dataset[i] for i in range(16)]))
    assert all(not torch.equal(a, b) for a, b in zip(g_before, trainer.generator.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, trainer.discriminator.parameters()))
    assert 0 < metrics["real_prob"].item() < 1 and 0 < metrics["fake_prob"].item() < 1
    assert all(p.requires_grad for p in trainer.discriminator.parameters())  # unfrozen again


def test_channels_last_gives_the_nchw_losses(make_config, tmp_path):
    fast = losses(make_trainer(make_config, tmp_path, "channels_last=true"))
    plain = losses(make_trainer(make_config, tmp_path, "channels_last=false"))
    assert fast == pytest.approx(plain, rel=1e-3, abs=1e-4)  # float reduction order only


@pytest.mark.parametrize("impl", ["foreach", "for_loop"])
def test_fused_adam_gives_the_textbook_losses(make_config, tmp_path, impl):
    fused = losses(make_trainer(make_config, tmp_path, "adam=fused"))
    other = losses(make_trainer(make_config, tmp_path, f"adam={impl}"))
    assert fused == pytest.approx(other, rel=1e-3, abs=1e-4)  # float reduction order only


def test_freezing_d_leaves_the_generator_gradients_unchanged(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path)
    fake = trainer.generator(torch.randn(8, trainer.arch.nz, 1, 1))

    def generator_grads(frozen: bool) -> list[torch.Tensor]:
        trainer.generator.zero_grad(set_to_none=True)
        trainer.discriminator.zero_grad(set_to_none=True)
        trainer.discriminator.requires_grad_(not frozen)
        generator_loss(trainer.discriminator(fake)).backward(retain_graph=True)
        trainer.discriminator.requires_grad_(True)
        return [p.grad.clone() for p in trainer.generator.parameters()]

    frozen, unfrozen = generator_grads(True), generator_grads(False)
    for a, b in zip(frozen, unfrozen):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # and frozen really means D's weights got no gradient
    trainer.discriminator.zero_grad(set_to_none=True)
    trainer.discriminator.requires_grad_(False)
    generator_loss(trainer.discriminator(fake)).backward()
    trainer.discriminator.requires_grad_(True)
    assert all(p.grad is None for p in trainer.discriminator.parameters())


def test_bf16_autocast_runs_on_cpu_and_fp16_is_refused(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path, "precision=bf16")
    assert trainer.autocast_dtype == torch.bfloat16
    assert torch.isfinite(torch.tensor(losses(trainer, steps=2))).all()
    assert make_trainer(make_config, tmp_path, "precision=auto").autocast_dtype is None
    with pytest.raises(DCGANError, match="fp16 is for GPUs"):
        make_trainer(make_config, tmp_path, "precision=fp16")


def test_compiled_networks_train_like_eager_ones(make_config, tmp_path):
    compiled = make_trainer(make_config, tmp_path, "compile=true")
    compiled_losses = losses(compiled, steps=2)  # before the next trainer reseeds the RNG
    eager_losses = losses(make_trainer(make_config, tmp_path), steps=2)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-4)
    # state dicts stay those of the plain modules (no _orig_mod. prefixes in checkpoints)
    assert not any(key.startswith("_orig_mod") for key in compiled.state_dict()["generator"])
