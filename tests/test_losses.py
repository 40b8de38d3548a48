import math

import torch

from dcgan.losses import bce, discriminator_loss, generator_loss


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
