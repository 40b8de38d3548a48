"""`dcgan-sample`: images from a trained generator.

    dcgan-sample --ckpt runs/celeba/2026-11-22_10-00-00 --n 64 --out faces.png --seed 1
    dcgan-sample --ckpt runs/celeba/2026-11-22_10-00-00 --interpolate 8 --out walk.png
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from dcgan.checkpoint import load_generator, resolve_checkpoint, run_dir_of
from dcgan.errors import DCGANError, reports_errors
from dcgan.images import image_grid, images_to_uint8, save_gif, save_png
from dcgan.models import Generator
from dcgan.runtime import resolve_device

log = logging.getLogger("dcgan.sample")

# Above this |cos| of the angle between two latents slerp's 1/sin(angle) loses precision.
PARALLEL_COS = 0.9995


@torch.no_grad()
def generate(generator: Generator, n: int, seed: int, device: torch.device,
             batch_size: int = 256) -> torch.Tensor:
    """n images in [-1, 1]; the noise comes from its own CPU generator, so a seed fixes them."""
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator.arch.nz, 1, 1, generator=rng)
    return _in_batches(generator, noise, device, batch_size)


@torch.no_grad()
def _in_batches(generator: Generator, noise: torch.Tensor, device: torch.device,
                batch_size: int) -> torch.Tensor:
    parts = [generator(noise[i : i + batch_size].to(device)).cpu()
             for i in range(0, len(noise), batch_size)]
    return torch.cat(parts)


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


def interpolation_noise(nz: int, frames: int, seed: int) -> torch.Tensor:
    """frames x nz x 1 x 1 latents on the slerp path between two draws of the seed; the
    endpoints are the noise `generate` uses for its first two images with the same seed."""
    rng = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(2, nz, 1, 1, generator=rng)
    return torch.stack([slerp(z0, z1, i / (frames - 1)) for i in range(frames)])


def interpolate(generator: Generator, frames: int, seed: int, device: torch.device,
                batch_size: int = 256) -> torch.Tensor:
    """frames images in [-1, 1] along the slerp path between two latents drawn from seed."""
    noise = interpolation_noise(generator.arch.nz, frames, seed)
    return _in_batches(generator, noise, device, batch_size)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dcgan-sample", description="Write a PNG grid (and optionally one PNG per image) "
        "of samples from a dcgan checkpoint.")
    parser.add_argument("--ckpt", required=True,
                        help="a checkpoint (.pt), a generator.safetensors, or a run directory "
                        "(uses checkpoints/last.pt)")
    parser.add_argument("--n", type=_positive, default=16,
                        help="how many images (default 16; ignored with --interpolate)")
    parser.add_argument("--out", type=Path, default=None,
                        help="grid PNG path (default: RUN_DIR/samples/sample_seed<S>_n<N>.png, "
                        "or RUN_DIR/samples/interp_seed<S>_k<K>.png with --interpolate)")
    parser.add_argument("--nrow", type=_positive, default=None,
                        help="images per grid row (default ceil(sqrt(n)); ignored with "
                        "--interpolate)")
    parser.add_argument("--interpolate", type=_frame_count, default=None, metavar="K",
                        help="instead of --n random images, K >= 2 frames of a spherical "
                        "interpolation between two latents drawn from --seed: a one-row PNG "
                        "strip at --out and an animated GIF beside it (same name, .gif)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="also write each image as DIR/sample_00000.png, ...")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _frame_count(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"an interpolation needs at least 2 frames, got {value}")
    return value


def _default_out(checkpoint: Path, args: argparse.Namespace) -> Path:
    name = (f"interp_seed{args.seed}_k{args.interpolate}.png" if args.interpolate
            else f"sample_seed{args.seed}_n{args.n}.png")
    return run_dir_of(checkpoint) / "samples" / name


def sample(args: argparse.Namespace) -> list[Path]:
    """Write the grid (or the interpolation strip and its GIF) and any single images; returns
    the paths written, the grid or strip first."""
    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    out = args.out or _default_out(checkpoint, args)
    if args.interpolate and out.suffix.lower() == ".gif":
        raise DCGANError(f"--out {out}: with --interpolate, --out is the PNG strip and the GIF "
                         "is written beside it; give a .png path")
    device = resolve_device(args.device)
    generator = load_generator(checkpoint, device)
    if args.interpolate:
        images = interpolate(generator, args.interpolate, args.seed, device)
        nrow = args.interpolate  # one row: the strip
    else:
        images = generate(generator, args.n, args.seed, device)
        nrow = args.nrow or math.ceil(math.sqrt(args.n))
    try:
        return _write(images, nrow, out, args)
    except OSError as error:
        raise DCGANError(f"cannot write samples: {error}") from error


def _write(images: torch.Tensor, nrow: int, out: Path, args: argparse.Namespace) -> list[Path]:
    save_png(image_grid(images, nrow=nrow), out)
    written = [out]
    if args.interpolate:
        save_gif(images, out.with_suffix(".gif"))
        written.append(out.with_suffix(".gif"))
    if args.out_dir is not None:
        for index, image in enumerate(images_to_uint8(images)):
            path = args.out_dir / f"sample_{index:05d}.png"
            save_png(image, path)
            written.append(path)
    return written


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    log.info("wrote %s", _summary(args, sample(args)))


def _summary(args: argparse.Namespace, written: list[Path]) -> str:
    files = (f"{written[0]} and {written[1]} ({args.interpolate} frames)" if args.interpolate
             else str(written[0]))
    singles = args.interpolate or args.n
    return files + (f" and {singles} images in {args.out_dir}" if args.out_dir else "")


if __name__ == "__main__":
    main()
