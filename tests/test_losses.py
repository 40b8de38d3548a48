import math

import pytest
import torch
from torch import nn

from dcgan.errors import DCGANError
from dcgan.nets.losses import (
    LOSS_KINDS,
    bce,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    label_flip_mask,
)
from dcgan.nets.models import Architecture, build_models


def test_bce_matches_hand_computed_values():
    logits = torch.tensor([0.0, 2.0, -1.0])
    p = [0.5, 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    expected_real = -sum(math.log(q) for q in p) / 3
    expected_fake = -sum(math.log(1 - q) for q in p) / 3
    assert abs(bce(logits, 1.0).item() - expected_real) < 1e-6
    assert abs(bce(logits, 0.0).item() - expected_fake) < 1e-6


def test_discriminator_loss_is_real_plus_fake():
    real, fake = torch.tensor([1.5, 0.3]), torch.tensor([-0.7, 0.2])
    loss, loss_real, loss_fake = discriminator_loss(real, fake)
    assert torch.allclose(loss, loss_real + loss_fake)
    expected_real = -(math.log(torch.sigmoid(real)[0]) + math.log(torch.sigmoid(real)[1])) / 2
    assert abs(loss_real.item() - expected_real) < 1e-6


def test_generator_loss_is_non_saturating():
    fake = torch.tensor([0.0])
    assert abs(generator_loss(fake).item() - math.log(2)) < 1e-6


def test_losses_stay_finite_at_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    loss_d, _, _ = discriminator_loss(big, -big)
    assert torch.isfinite(loss_d)
    # D completely fooled by G: the G loss is large but finite (BCELoss would clamp at 100)
    loss_g = generator_loss(torch.tensor([-1e4]))
    assert torch.isfinite(loss_g) and loss_g.item() > 1e3
    # gradients are finite too
    logits = torch.tensor([1e4, -1e4], requires_grad=True)
    generator_loss(logits).backward()
    assert torch.isfinite(logits.grad).all()


REAL, FAKE = torch.tensor([1.5, -0.5, 0.25]), torch.tensor([-2.0, 0.5, 1.0])


def bce_by_hand(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def test_default_kind_is_the_paper_bce():
    assert all(torch.equal(a, b) for a, b in zip(discriminator_loss(REAL, FAKE),
                                                 discriminator_loss(REAL, FAKE, kind="bce")))
    assert torch.equal(generator_loss(FAKE), generator_loss(FAKE, kind="bce"))


@pytest.mark.parametrize("kind, real_term, fake_term, g_term", [
    ("hinge", lambda r: max(0.0, 1 - r), lambda f: max(0.0, 1 + f), lambda f: -f),
    ("lsgan", lambda r: 0.5 * (r - 1) ** 2, lambda f: 0.5 * f ** 2, lambda f: 0.5 * (f - 1) ** 2),
    ("wgan_gp", lambda r: -r, lambda f: f, lambda f: -f),
    ("bce", lambda r: bce_by_hand(r, 1), lambda f: bce_by_hand(f, 0), lambda f: bce_by_hand(f, 1)),
])
def test_each_kind_matches_hand_computed_values(kind, real_term, fake_term, g_term):
    loss, loss_real, loss_fake = discriminator_loss(REAL, FAKE, kind=kind)
    expected_real = mean(real_term(r) for r in REAL.tolist())
    expected_fake = mean(fake_term(f) for f in FAKE.tolist())
    assert loss_real.item() == pytest.approx(expected_real, abs=1e-6)
    assert loss_fake.item() == pytest.approx(expected_fake, abs=1e-6)
    assert loss.item() == pytest.approx(expected_real + expected_fake, abs=1e-6)
    assert generator_loss(FAKE, kind=kind).item() == pytest.approx(
        mean(g_term(f) for f in FAKE.tolist()), abs=1e-6)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_every_loss_is_a_float32_scalar(kind):
    real = REAL.to(torch.bfloat16).requires_grad_(True)
    for value in (*discriminator_loss(real, FAKE.half(), kind=kind),
                  generator_loss(FAKE.to(torch.bfloat16), kind=kind)):
        assert value.dtype == torch.float32 and value.dim() == 0


def test_unknown_kind_is_refused():
    with pytest.raises(DCGANError, match="hinge"):
        discriminator_loss(REAL, FAKE, kind="wasserstein")
    with pytest.raises(DCGANError, match="hinge"):
        generator_loss(FAKE, kind="wasserstein")
    with pytest.raises(DCGANError, match="real_label"):  # labels mean nothing to hinge
        discriminator_loss(REAL, FAKE, kind="hinge", real_label=0.9)


def test_label_smoothing_changes_only_the_real_term():
    plain = discriminator_loss(REAL, FAKE)
    loss, loss_real, loss_fake = discriminator_loss(REAL, FAKE, real_label=0.9)
    assert torch.equal(loss_fake, plain[2])
    assert loss_real.item() == pytest.approx(mean(bce_by_hand(r, 0.9) for r in REAL.tolist()),
                                             abs=1e-6)
    assert torch.allclose(loss_real, bce(REAL, 0.9)) and not torch.allclose(loss_real, plain[1])
    _, ls_real, ls_fake = discriminator_loss(REAL, FAKE, kind="lsgan", real_label=0.9)
    assert ls_real.item() == pytest.approx(mean(0.5 * (r - 0.9) ** 2 for r in REAL.tolist()))
    assert torch.equal(ls_fake, discriminator_loss(REAL, FAKE, kind="lsgan")[2])


def test_label_flip_mask_probabilities():
    n = len(REAL) + len(FAKE)
    assert not label_flip_mask(n, 0.0).any()
    assert label_flip_mask(n, 1.0).all()
    mask = label_flip_mask(10_000, 0.1, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (10_000,)
    assert mask.float().mean().item() == pytest.approx(0.1, abs=0.01)
    again = label_flip_mask(10_000, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


@pytest.mark.parametrize("kind", ["bce", "lsgan"])
def test_flips_swap_the_targets_of_the_chosen_samples(kind):
    n = len(REAL) + len(FAKE)
    plain = discriminator_loss(REAL, FAKE, kind=kind, real_label=0.9)
    unflipped = discriminator_loss(REAL, FAKE, kind=kind, real_label=0.9,
                                   flip=label_flip_mask(n, 0.0))
    assert all(torch.equal(a, b) for a, b in zip(plain, unflipped))
    # everything flipped: reals are scored as fakes (target 0), fakes as reals (real_label)
    _, loss_real, loss_fake = discriminator_loss(REAL, FAKE, kind=kind, real_label=0.9,
                                                 flip=label_flip_mask(n, 1.0))
    swapped_real = discriminator_loss(FAKE, REAL, kind=kind, real_label=0.9)[2]
    swapped_fake = discriminator_loss(FAKE, REAL, kind=kind, real_label=0.9)[1]
    assert torch.allclose(loss_real, swapped_real) and torch.allclose(loss_fake, swapped_fake)


def test_a_flip_touches_only_its_own_sample():
    flip = torch.tensor([False, True, False, False, False, True])  # real #1 and fake #2
    _, loss_real, loss_fake = discriminator_loss(REAL, FAKE, flip=flip)
    r, f = REAL.tolist(), FAKE.tolist()
    assert loss_real.item() == pytest.approx(
        mean([bce_by_hand(r[0], 1), bce_by_hand(r[1], 0), bce_by_hand(r[2], 1)]), abs=1e-6)
    assert loss_fake.item() == pytest.approx(
        mean([bce_by_hand(f[0], 0), bce_by_hand(f[1], 0), bce_by_hand(f[2], 1)]), abs=1e-6)
    with pytest.raises(ValueError, match="3 \\+ 3"):
        discriminator_loss(REAL, FAKE, flip=flip[:3])


def linear_critic(norm: float, shape=(1, 4, 4)) -> nn.Module:
    """D(x) = w . x with ||w|| = norm: its gradient is w everywhere."""
    critic = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 1, bias=False),
                           nn.Flatten(0))
    with torch.no_grad():
        w = torch.randn_like(critic[1].weight, generator=torch.Generator().manual_seed(1))
        critic[1].weight.copy_(w / w.norm() * norm)
    return critic


def test_gradient_penalty_of_a_unit_gradient_critic_is_zero():
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    penalty = gradient_penalty(linear_critic(1.0), real, fake)
    assert penalty.dtype == torch.float32 and penalty.dim() == 0
    assert penalty.item() == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("norm, weight", [(2.0, 10.0), (0.5, 1.0), (3.0, 0.1)])
def test_gradient_penalty_is_weight_times_squared_excess(norm, weight):
    critic = linear_critic(norm)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    penalty = gradient_penalty(critic, real, fake, weight=weight)
    assert penalty.item() == pytest.approx(weight * (norm - 1) ** 2, rel=1e-5)
    # backward reaches D's weights: d/dw weight * (||w|| - 1)^2 = 2 weight (||w|| - 1) w/||w||
    penalty.backward()
    w = critic[1].weight.detach()
    assert torch.allclose(critic[1].weight.grad, 2 * weight * (norm - 1) * w / norm, atol=1e-5)


def test_gradient_penalty_trains_a_real_discriminator():
    torch.manual_seed(0)
    _, discriminator = build_models(Architecture(ndf=4, d_batchnorm=False))
    real, fake = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1
    fake.requires_grad_(True)
    penalty = gradient_penalty(discriminator, real, fake,
                               generator=torch.Generator().manual_seed(0))
    again = gradient_penalty(discriminator, real, fake, generator=torch.Generator().manual_seed(0))
    assert torch.equal(penalty, again) and penalty.item() > 0
    penalty.backward()
    # every weight shapes grad_x D; biases do not (a piecewise-linear D's gradient ignores them)
    weights = [m.weight for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    assert fake.grad is None  # the penalty trains D only
