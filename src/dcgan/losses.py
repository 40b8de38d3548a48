"""The adversarial losses of the DCGAN paper, computed from logits.

BCE-with-logits is the same mathematics as Sigmoid followed by BCELoss, but stays finite
where BCELoss clamps log(0): a discriminator that has won still produces a useful number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against a constant label, in float32."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_D = -[log D(x) + log(1 - D(G(z)))]: returns (loss_d, loss_real, loss_fake)."""
    loss_real = bce(real_logits, 1.0)
    loss_fake = bce(fake_logits, 0.0)
    return loss_real + loss_fake, loss_real, loss_fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss L_G = -log D(G(z))."""
    return bce(fake_logits, 1.0)
