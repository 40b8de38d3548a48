"""Latent vectors for dcgan-sample: seeded draws, truncation, and paths between them.

  seed_latent(seed)     the latent of one seed, from an RNG of its own: seed s gives the same
                        image whatever else is drawn beside it
  truncation (psi)      each coordinate kept within the central psi of the normal's mass:
                        coordinates beyond the threshold are drawn again (the truncation trick
                        of Brock et al., 2019, for generators fed z directly). Resampling, not
                        scaling towards the mean: DCGAN's G has no mapping network and no
                        learned average latent to scale towards, and resampling removes only
                        the rare extreme coordinates (where artefacts come from) while every
                        typical coordinate stays as drawn; scaling would move them all. psi = 1
                        draws nothing more: today's latents exactly.
  slerp, keyframe_walk  spherical interpolation, and a looping walk through seeded keyframes
"""

from __future__ import annotations

import math
import re

import torch

from dcgan.errors import DCGANError

# Above this |cos| of the angle between two latents slerp's 1/sin(angle) loses precision.
PARALLEL_COS = 0.9995
SEED_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str) -> list[int]:
    """'0-35,40,42' -> [0, 1, ..., 35, 40, 42] (in the order given, repeats dropped)."""
    seeds: list[int] = []
    for part in text.split(","):
        match = SEED_RANGE.match(part.strip())
        if match is None:
            raise DCGANError(f"--seeds {text!r}: {part.strip()!r} is neither a seed nor a range "
                             "like 0-35; write e.g. --seeds 0-35,40,42")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise DCGANError(f"--seeds {text!r}: the range {part.strip()} runs backwards")
        seeds += [seed for seed in range(first, last + 1) if seed not in seeds]
    return seeds


def truncation_threshold(psi: float) -> float:
    """The t with P(|z| <= t) = psi for a standard normal z (infinite for psi = 1)."""
    if psi >= 1.0:
        return math.inf
    return math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(psi, dtype=torch.float64)))


def truncate(latents: torch.Tensor, psi: float, rng: torch.Generator) -> torch.Tensor:
    """Coordinates beyond the threshold drawn again (from `rng`) until none is left."""
    threshold = truncation_threshold(psi)
    if math.isinf(threshold):
        return latents
    latents = latents.clone()
    outside = latents.abs() > threshold
    while outside.any():
        latents[outside] = torch.randn(int(outside.sum()), generator=rng)
        outside = latents.abs() > threshold
    return latents


def batch_latents(n: int, nz: int, seed: int, psi: float = 1.0) -> torch.Tensor:
    """n x nz x 1 x 1 latents, all from one seed (dcgan-sample --n N --seed S)."""
    rng = torch.Generator().manual_seed(seed)
    return truncate(torch.randn(n, nz, 1, 1, generator=rng), psi, rng)


def seed_latent(seed: int, nz: int, psi: float = 1.0) -> torch.Tensor:
    """nz x 1 x 1: the latent of one seed (dcgan-sample --seeds)."""
    return batch_latents(1, nz, seed, psi)[0]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from z0 (t=0) to z1 (t=1), each tensor taken as one vector.

    The point moves along the great circle at a constant angular speed: the angle to z0 is
    t times the angle between z0 and z1, and where |z0| == |z1| the norm stays the same
    (a straight line would cut through the low-density middle of the Gaussian). Nearly
    parallel (or opposite) vectors, and a zero vector, fall back to linear interpolation.
    """
    a, b = z0.double().flatten(), z1.double().flatten()
    norms = float(a.norm() * b.norm())
    cos = float(a @ b) / norms if norms > 0 else 1.0
    if abs(cos) > PARALLEL_COS:
        return (1.0 - t) * z0 + t * z1
    angle = math.acos(cos)
    return (math.sin((1.0 - t) * angle) * z0 + math.sin(t * angle) * z1) / math.sin(angle)


def interpolation_noise(nz: int, frames: int, seed: int, psi: float = 1.0) -> torch.Tensor:
    """frames x nz x 1 x 1 latents on the slerp path between two draws of the seed; the
    endpoints are the latents `--n 2 --seed S` turns into images."""
    z0, z1 = batch_latents(2, nz, seed, psi)
    return torch.stack([slerp(z0, z1, i / (frames - 1)) for i in range(frames)])


def keyframe_walk(keyframes: list[torch.Tensor], frames_between: int) -> torch.Tensor:
    """A loop through the keyframes: `frames_between` frames from each to the next (slerp),
    the last leading back to the first, so the animation repeats without a jump.
    Returns (len(keyframes) * frames_between) x nz x 1 x 1; frame i * frames_between is
    keyframe i itself."""
    frames = []
    for index, start in enumerate(keyframes):
        end = keyframes[(index + 1) % len(keyframes)]
        frames += [slerp(start, end, step / frames_between) for step in range(frames_between)]
    return torch.stack(frames)
