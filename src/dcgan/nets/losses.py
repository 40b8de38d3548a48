"""The adversarial losses, computed from the discriminator's raw outputs (logits).

BCE-with-logits is the same mathematics as Sigmoid followed by BCELoss, but stays finite
where BCELoss clamps log(0): a discriminator that has won still produces a useful number.

Besides the paper's `bce` there are `hinge` (Lim & Ye, 2017; Miyato et al., 2018), `lsgan`
(least squares, Mao et al., 2017) and `wgan_gp` (Gulrajani et al., 2017, whose penalty is
`gradient_penalty`, added to the discriminator's loss by the caller). Every loss is a float32
scalar, whatever the dtype of the logits (autocast may hand in bfloat16 or float16).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from dcgan.errors import DCGANError

LOSS_KINDS = ("bce", "hinge", "lsgan", "wgan_gp")


def bce(logits: torch.Tensor, target: Union[float, torch.Tensor]) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against a constant label, or against one
    label per logit (a tensor like `logits`), in float32."""
    logits = logits.float()
    if isinstance(target, torch.Tensor):
        return F.binary_cross_entropy_with_logits(logits, target.to(logits))
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def label_flip_mask(n: int, p: float, *, generator: Optional[torch.Generator] = None,
                    device: Union[torch.device, str, None] = None) -> torch.Tensor:
    """A bool tensor of n entries, each True with probability p (independently); p=0 gives
    all False, p=1 all True. Drawn on `generator`'s device (or `device`), returned on `device`.

    For `discriminator_loss(..., flip=...)` use n = len(real_logits) + len(fake_logits).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a flip probability must be in [0, 1], got {p}")
    draw_on = generator.device if generator is not None else device
    return (torch.rand(n, generator=generator, device=draw_on) < p).to(device)


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    kind: str = "bce",
    real_label: float = 1.0,
    flip: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The discriminator's loss for `kind`: returns (loss_d, loss_real, loss_fake), float32
    scalars with loss_d = loss_real + loss_fake.

    bce:      loss_real = BCE(r, a), loss_fake = BCE(f, 0), with a = real_label (0.9 is
              one-sided label smoothing; fakes keep target 0).
    lsgan:    loss_real = 0.5 mean((r - a)^2), loss_fake = 0.5 mean(f^2).
    hinge:    loss_real = mean(relu(1 - r)), loss_fake = mean(relu(1 + f)).
    wgan_gp:  loss_real = -mean(r), loss_fake = mean(f) (add `gradient_penalty` yourself).

    flip (bce and lsgan only): a bool tensor of len(real_logits) + len(fake_logits) entries,
    the real samples first, then the fake ones. A True entry swaps that sample's target: a
    flipped real sample is scored against 0, a flipped fake sample against `real_label`.
    Each term stays the mean over its own samples. None (or all False) changes nothing.
    """
    if kind not in LOSS_KINDS:
        raise DCGANError(f"unknown loss {kind!r}; choose one of {', '.join(LOSS_KINDS)}")
    r, f = real_logits.float().flatten(), fake_logits.float().flatten()
    if kind == "hinge" or kind == "wgan_gp":
        if real_label != 1.0 or flip is not None:
            raise DCGANError(f"real_label and label flips are for loss=bce or lsgan, not {kind}")
        if kind == "hinge":
            loss_real, loss_fake = F.relu(1.0 - r).mean(), F.relu(1.0 + f).mean()
        else:
            loss_real, loss_fake = -r.mean(), f.mean()
        return loss_real + loss_fake, loss_real, loss_fake
    real_target, fake_target = _targets(r, f, real_label, flip)
    if kind == "bce":
        loss_real, loss_fake = bce(r, real_target), bce(f, fake_target)
    else:
        loss_real = 0.5 * (r - real_target).square().mean()
        loss_fake = 0.5 * (f - fake_target).square().mean()
    return loss_real + loss_fake, loss_real, loss_fake


def _targets(r: torch.Tensor, f: torch.Tensor, real_label: float,
             flip: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample targets (real_label for reals, 0 for fakes), swapped where `flip` says."""
    real_target, fake_target = torch.full_like(r, real_label), torch.zeros_like(f)
    if flip is None:
        return real_target, fake_target
    if flip.dtype != torch.bool or flip.shape != (len(r) + len(f),):
        raise ValueError(f"flip must be a bool tensor of {len(r)} + {len(f)} entries (real "
                         f"samples, then fake ones), got {flip.dtype} {tuple(flip.shape)}")
    flip = flip.to(r.device)
    flip_real, flip_fake = flip[: len(r)], flip[len(r):]
    return (torch.where(flip_real, torch.zeros_like(r), real_target),
            torch.where(flip_fake, torch.full_like(f, real_label), fake_target))


def generator_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The generator's loss for `kind`, a float32 scalar: bce is the non-saturating
    L_G = -log D(G(z)); lsgan 0.5 mean((f - 1)^2); hinge and wgan_gp -mean(f)."""
    f = fake_logits.float()
    if kind == "bce":
        return bce(f, 1.0)
    if kind == "lsgan":
        return 0.5 * (f - 1.0).square().mean()
    if kind in ("hinge", "wgan_gp"):
        return -f.mean()
    raise DCGANError(f"unknown loss {kind!r}; choose one of {', '.join(LOSS_KINDS)}")


def gradient_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     weight: float = 10.0,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """WGAN-GP's penalty, a float32 scalar: weight * mean((||grad_x D(x)||_2 - 1)^2) over
    x = eps * real + (1 - eps) * fake, eps ~ U[0, 1) per image.

    The graph is kept (create_graph=True), so backward() reaches D's parameters. D runs in
    float32 here (autocast off) and in its current mode: with BatchNorm in train mode the
    gradient would mix images, which is why wgan_gp wants `d_batchnorm=False`.
    """
    real, fake = real.detach().float(), fake.detach().float()
    draw_on = generator.device if generator is not None else real.device
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=draw_on).to(real)
    mixed = torch.lerp(fake, real, eps).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        scores = discriminator(mixed).float()
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return weight * (norms - 1.0).square().mean()
