"""What can be done to the images D sees: DiffAugment and instance noise.

DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN
Training") transforms real and fake images alike, in the D step and in the G step, with
operations that gradients pass through, so G learns through the augmentation instead of
learning to produce it. Each image draws its own parameters:

  color        brightness + U(-0.5, 0.5); saturation x U(0, 2) (3 channels only);
               contrast x U(0.5, 1.5) around the image's mean
  translation  an integer shift of up to 1/8 of the size each way, independently in x and y;
               uncovered pixels are 0
  cutout       a square of half the size (rounded) set to 0, its centre uniform over the
               image, clipped where it hangs over an edge (so near an edge it is smaller)

The fill value 0 is mid-grey in the [-1, 1] image range, as in the paper's code. Randomness
comes from torch's global RNG, or from `generator`: the same seed gives the same transforms,
so passing two generators seeded alike applies identical transforms to two batches.
Instance noise (Sønderby et al., 2016; Arjovsky & Bottou, 2017) adds N(0, std^2) to every
pixel, usually with a std annealed to 0 over training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from dcgan.errors import DCGANError

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def diff_augment(images: torch.Tensor, policy: Union[str, Sequence[str]],
                 generator: Optional[torch.Generator] = None,
                 p: Union[float, torch.Tensor] = 1.0) -> torch.Tensor:
    """The images (N x C x H x W) with the policy's operations applied in the order named.

    `policy` is a comma-separated string ("color,translation,cutout") or a list of names;
    an empty policy, or p = 0, returns `images` itself and draws no random numbers. With
    p < 1 each image gets each operation with probability p (Karras et al., 2020: the
    strength adaptive augmentation tunes); p = 1 draws exactly what it always did.
    A tensor p (0 < p < 1, on the images' device) is only read on the device, as a CUDA
    graph replaying the step needs; it draws what the same p as a number draws.
    """
    on_device = isinstance(p, torch.Tensor)
    if not on_device and p <= 0:
        return images
    for name in parse_policy(policy):
        augmented = _OPERATIONS[name](images, generator)
        if on_device or p < 1:
            chosen = _uniform(images.shape[0], generator, images) < p
            augmented = torch.where(chosen, augmented, images)
        images = augmented
    return images


def mirror(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each image flipped left-right with probability 1/2 (dataset.mirror: twice the data for
    anything with no handedness, faces included)."""
    flip = _uniform(images.shape[0], generator, images) < 0.5
    return torch.where(flip, images.flip(3), images)


@dataclass(frozen=True)
class AdaSettings:
    """Adaptive augmentation (augment.p=ada): every `interval` steps, p moves towards keeping
    the overfitting signal r_t = E[sign(D(real))] at `target`, fast enough to go from 0 to 1
    in `speed_images` images."""

    target: float = 0.6
    interval: int = 4
    speed_images: int = 500_000

    def next_p(self, p: float, rt: float, images_per_step: int) -> float:
        """p after one adjustment: up when D is too sure of the reals (r_t above target),
        down when it is not, clamped to [0, 1]."""
        step = images_per_step * self.interval / self.speed_images
        direction = (rt > self.target) - (rt < self.target)
        return min(max(p + direction * step, 0.0), 1.0)


def parse_policy(policy: Union[str, Sequence[str]]) -> list[str]:
    """The operation names of a policy, in order; raises DCGANError for an unknown one."""
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = [name.strip() for name in names if name.strip()]
    for name in names:
        if name not in _OPERATIONS:
            raise DCGANError(f"unknown augmentation {name!r}; choose from "
                             f"{', '.join(_OPERATIONS)}, e.g. color,translation,cutout")
    return names


def color(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random brightness, saturation (3 channels only) and contrast, per image."""
    n = images.shape[0]
    images = images + (_uniform(n, generator, images) - 0.5)
    if images.shape[1] > 1:
        gray = images.mean(dim=1, keepdim=True)
        images = (images - gray) * (_uniform(n, generator, images) * 2) + gray
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_uniform(n, generator, images) + 0.5) + mean


def translation(images: torch.Tensor, generator: Optional[torch.Generator] = None,
                ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Each image shifted by whole pixels, up to `ratio` of its size each way, zero-filled.

    Content at (y, x) moves to (y + dy, x + dx) with dy, dx uniform in [-shift, shift].
    """
    n, _, h, w = images.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(-sy, sy + 1, n, generator, images.device)
    dx = _randint(-sx, sx + 1, n, generator, images.device)
    padded = F.pad(images, (sx, sx, sy, sy))
    rows = torch.arange(h, device=images.device)[None, :] - dy[:, None] + sy  # N x H
    cols = torch.arange(w, device=images.device)[None, :] - dx[:, None] + sx  # N x W
    batch = torch.arange(n, device=images.device)[:, None, None]
    # advanced indices around a slice: the result is N x H x W x C
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, generator: Optional[torch.Generator] = None,
           ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Each image with a square of round(ratio * size) pixels a side set to 0, its centre
    uniform over the image and clipped at the edges."""
    n, _, h, w = images.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _randint(0, h + 1 - ch % 2, n, generator, images.device) - ch // 2
    left = _randint(0, w + 1 - cw % 2, n, generator, images.device) - cw // 2
    rows = torch.arange(h, device=images.device)[None, :]
    cols = torch.arange(w, device=images.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + ch)  # N x H
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + cw)  # N x W
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # N x H x W
    return images * keep[:, None].to(images.dtype)


_OPERATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "color": color, "translation": translation, "cutout": cutout}
AUGMENT_POLICIES = tuple(_OPERATIONS)  # what `augment=[...]` may name


def instance_noise(images: torch.Tensor, std: Union[float, torch.Tensor],
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """images + N(0, std^2) per pixel; std <= 0 returns `images` itself and draws nothing.
    A tensor std (positive, on the images' device) is only read on the device."""
    if not isinstance(std, torch.Tensor) and std <= 0:
        return images
    draw_on = generator.device if generator is not None else images.device
    noise = torch.randn(images.shape, generator=generator, device=draw_on, dtype=images.dtype)
    return images + std * noise.to(images.device)


def annealed_std(start_std: float, progress: float) -> float:
    """The instance-noise std at `progress` through the annealing (clamped to [0, 1]):
    start_std at 0, falling linearly to 0.0 at 1."""
    return start_std * (1.0 - min(max(progress, 0.0), 1.0))


@dataclass(frozen=True)
class NoiseSchedule:
    """Instance noise over a run: `std` at `start_step`, falling linearly to 0 over
    `anneal_epochs` epochs (None: over what is left of the run's `run_epochs`)."""

    std: float = 0.0
    anneal_epochs: Optional[float] = None
    run_epochs: int = 1
    steps_per_epoch: int = 1
    start_step: int = 0  # moved by a collapse rollback, which restarts the annealing

    def std_at(self, step: int) -> float:
        """The std for the step after `step` completed steps (0.0 when off)."""
        if self.std <= 0:
            return 0.0
        epochs = self.anneal_epochs or max(
            self.run_epochs - self.start_step / self.steps_per_epoch, 1)
        progress = (step - self.start_step) / (epochs * self.steps_per_epoch)
        return annealed_std(self.std, min(max(progress, 0.0), 1.0))


def _uniform(n: int, generator: Optional[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    """N x 1 x 1 x 1 draws from U[0, 1), on `like`'s device and dtype."""
    draw_on = generator.device if generator is not None else like.device
    draws = torch.rand(n, 1, 1, 1, generator=generator, device=draw_on, dtype=like.dtype)
    return draws.to(like.device)


def _randint(low: int, high: int, n: int, generator: Optional[torch.Generator],
             device: torch.device) -> torch.Tensor:
    """n integers uniform in [low, high), on `device`."""
    draw_on = generator.device if generator is not None else device
    return torch.randint(low, high, (n,), generator=generator, device=draw_on).to(device)
