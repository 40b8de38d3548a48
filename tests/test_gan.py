"""The GAN pair on its own (no loader, no run directory): one training step updates both
networks, speed options change speed, not results, and its state round-trips."""

import copy

import pytest
import torch

from dcgan.config import gan_settings
from dcgan.data.datasets import FakeImages
from dcgan.errors import DCGANError
from dcgan.nets.losses import generator_loss
from dcgan.runtime.process import seed_everything
from dcgan.training.pair import GANPair, NonFiniteLoss
from tests.conftest import TINY

FAKE = [*TINY, "dataset=fake", "dataset.size=64"]
REAL = FakeImages(64, 3, 64)


def make_pair(make_config, *overrides, device: str = "cpu") -> GANPair:
    cfg = make_config(*FAKE, *overrides)
    seed_everything(cfg.seed)
    return GANPair(gan_settings(cfg, steps_per_epoch=4), torch.device(device))


def losses(pair: GANPair, steps: int = 3) -> list[float]:
    """loss_d, loss_g of each step, flattened: [d1, g1, d2, g2, ...]."""
    batches = torch.stack([REAL[i] for i in range(16 * steps)]).split(16)
    out = []
    for step, real in enumerate(batches):
        metrics = pair.train_step(real, step)
        out += [metrics["loss_d"].item(), metrics["loss_g"].item()]
    return out


def test_train_step_updates_both_networks(make_config):
    pair = make_pair(make_config)
    g_before = [p.clone() for p in pair.generator.parameters()]
    d_before = [p.clone() for p in pair.discriminator.parameters()]
    metrics = pair.train_step(torch.stack([REAL[i] for i in range(16)]), 0)
    assert all(not torch.equal(a, b) for a, b in zip(g_before, pair.generator.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, pair.discriminator.parameters()))
    assert 0 < metrics["real_prob"].item() < 1 and 0 < metrics["fake_prob"].item() < 1
    assert all(p.requires_grad for p in pair.discriminator.parameters())  # unfrozen again


def test_channels_last_gives_the_nchw_losses(make_config):
    fast = losses(make_pair(make_config, "channels_last=true"))
    plain = losses(make_pair(make_config, "channels_last=false"))
    assert fast == pytest.approx(plain, rel=1e-3, abs=1e-4)  # float reduction order only


@pytest.mark.parametrize("impl", ["foreach", "for_loop"])
def test_fused_adam_gives_the_textbook_losses(make_config, impl):
    fused = losses(make_pair(make_config, "adam=fused"))
    other = losses(make_pair(make_config, f"adam={impl}"))
    assert fused == pytest.approx(other, rel=1e-3, abs=1e-4)  # float reduction order only


def test_freezing_d_leaves_the_generator_gradients_unchanged(make_config):
    pair = make_pair(make_config)
    fake = pair.generator(torch.randn(8, pair.settings.arch.nz, 1, 1))

    def generator_grads(frozen: bool) -> list[torch.Tensor]:
        pair.generator.zero_grad(set_to_none=True)
        pair.discriminator.zero_grad(set_to_none=True)
        pair.discriminator.requires_grad_(not frozen)
        generator_loss(pair.discriminator(fake)).backward(retain_graph=True)
        pair.discriminator.requires_grad_(True)
        return [p.grad.clone() for p in pair.generator.parameters()]

    frozen, unfrozen = generator_grads(True), generator_grads(False)
    for a, b in zip(frozen, unfrozen):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    # and frozen really means D's weights got no gradient
    pair.discriminator.zero_grad(set_to_none=True)
    pair.discriminator.requires_grad_(False)
    generator_loss(pair.discriminator(fake)).backward()
    pair.discriminator.requires_grad_(True)
    assert all(p.grad is None for p in pair.discriminator.parameters())


def test_bf16_autocast_runs_on_cpu_and_fp16_is_refused(make_config):
    pair = make_pair(make_config, "precision=bf16")
    assert pair.autocast_dtype == torch.bfloat16
    assert torch.isfinite(torch.tensor(losses(pair, steps=2))).all()
    assert make_pair(make_config, "precision=auto").autocast_dtype is None
    with pytest.raises(DCGANError, match="fp16 is for GPUs"):
        make_pair(make_config, "precision=fp16")


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from dcgan.runtime.process import cpu_flags, cpu_has_native_bf16

    zen4 = tmp_path / "cpuinfo"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert "avx512_bf16" in cpu_flags(str(zen4))
    assert cpu_has_native_bf16(cpu_flags(str(zen4)))
    assert cpu_has_native_bf16({"amx_bf16", "amx_tile"})  # a Xeon with AMX
    assert not cpu_has_native_bf16({"avx2", "avx512f"})  # AVX-512 without BF16: emulated
    assert cpu_flags(str(tmp_path / "absent")) == set()  # not Linux: nothing claimed


def test_compiled_networks_train_like_eager_ones(make_config):
    compiled = make_pair(make_config, "compile=true")
    compiled_losses = losses(compiled, steps=2)  # before the next pair reseeds the RNG
    eager_losses = losses(make_pair(make_config), steps=2)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-4)
    # state dicts stay those of the plain modules (no _orig_mod. prefixes in checkpoints)
    assert not any(key.startswith("_orig_mod") for key in compiled.state_dict()["generator"])


def test_state_round_trip_continues_bit_identically(make_config):
    first = make_pair(make_config, "ema.decay=0.9")
    losses(first, steps=2)
    state = copy.deepcopy(first.state_dict())  # its tensors are the live ones
    rng = torch.get_rng_state()
    expected = losses(first, steps=2)
    second = make_pair(make_config, "ema.decay=0.9")
    second.load_state_dict(state)
    torch.set_rng_state(rng)
    assert losses(second, steps=2) == expected
    assert torch.equal(second.ema.module.main[0].weight, first.ema.module.main[0].weight)


def test_a_checkpoint_of_other_networks_is_refused_by_name(make_config):
    state = make_pair(make_config, "model.ngf=16").state_dict()
    with pytest.raises(DCGANError, match="ngf=16 .* do not match the config .*ngf=8"):
        make_pair(make_config).load_state_dict(state)


def test_a_non_finite_loss_raises_before_the_update(make_config):
    pair = make_pair(make_config, "lr=1e30")
    batches = torch.stack([REAL[i] for i in range(16 * 5)]).split(16)
    for step, real in enumerate(batches):
        before = {"generator": [p.clone() for p in pair.generator.parameters()],
                  "discriminator": [p.clone() for p in pair.discriminator.parameters()]}
        try:
            pair.train_step(real, step)
        except NonFiniteLoss as error:
            assert error.exit_code == 3
            network = error.which.split()[0]  # the network whose loss it was
            after = getattr(pair, network).parameters()
            assert all(torch.equal(a, b) for a, b in zip(before[network], after))
            assert all(p.requires_grad for p in pair.discriminator.parameters())  # unfrozen
            return
    pytest.fail("lr=1e30 never gave a non-finite loss")


def test_reconfigure_changes_learning_rates_not_the_networks(make_config):
    from dataclasses import replace

    pair = make_pair(make_config)
    pair.reconfigure(replace(pair.settings, lr_d=1e-5, real_label=0.9))
    assert pair.opt_d.param_groups[0]["lr"] == 1e-5 and pair.settings.real_label == 0.9
    with pytest.raises(ValueError, match="architecture"):
        pair.reconfigure(replace(pair.settings, arch=replace(pair.settings.arch, ngf=4)))
