"""`dcgan-sample`: images from a trained generator.

    dcgan-sample --ckpt runs/celeba/2026-11-22_10-00-00 --n 64 --out faces.png --seed 1
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from dcgan.checkpoint import load_checkpoint, load_generator_file, resolve_checkpoint, run_dir_of
from dcgan.errors import DCGANError, exit_with
from dcgan.models import Architecture, Generator
from dcgan.runtime import resolve_device
from dcgan.tracking import image_grid, images_to_uint8, save_png

log = logging.getLogger("dcgan.sample")


def load_generator(checkpoint: Path, device: torch.device) -> Generator:
    """The generator of a training checkpoint or of a generator.safetensors file, in eval
    mode (BatchNorm running statistics)."""
    if checkpoint.suffix == ".safetensors":
        weights, arch = load_generator_file(checkpoint)
    else:
        state = load_checkpoint(checkpoint)
        weights, arch = state["generator"], state["arch"]
    try:
        generator = Generator(Architecture(**arch))
        generator.load_state_dict(weights)
    except (TypeError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DCGANError(f"{checkpoint}: the generator weights do not match the architecture "
                         f"recorded in it ({first_line})") from error
    return generator.to(device).eval()


@torch.no_grad()
def generate(generator: Generator, n: int, seed: int, device: torch.device,
             batch_size: int = 256) -> torch.Tensor:
    """n images in [-1, 1]; the noise comes from its own CPU generator, so a seed fixes them."""
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator.arch.nz, 1, 1, generator=rng)
    parts = [generator(noise[i : i + batch_size].to(device)).cpu()
             for i in range(0, n, batch_size)]
    return torch.cat(parts)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dcgan-sample", description="Write a PNG grid (and optionally one PNG per image) "
        "of samples from a dcgan checkpoint.")
    parser.add_argument("--ckpt", required=True,
                        help="a checkpoint (.pt), a generator.safetensors, or a run directory "
                        "(uses checkpoints/last.pt)")
    parser.add_argument("--n", type=_positive, default=16, help="how many images (default 16)")
    parser.add_argument("--out", type=Path, default=None,
                        help="grid PNG path (default: RUN_DIR/samples/sample_seed<S>_n<N>.png)")
    parser.add_argument("--nrow", type=_positive, default=None,
                        help="images per grid row (default ceil(sqrt(n)))")
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


def sample(args: argparse.Namespace) -> list[Path]:
    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    device = resolve_device(args.device)
    generator = load_generator(checkpoint, device)
    images = generate(generator, args.n, args.seed, device)
    out = args.out or run_dir_of(checkpoint) / "samples" / f"sample_seed{args.seed}_n{args.n}.png"
    nrow = args.nrow or math.ceil(math.sqrt(args.n))
    written = [out]
    try:
        save_png(image_grid(images, nrow=nrow), out)
        if args.out_dir is not None:
            for index, image in enumerate(images_to_uint8(images)):
                path = args.out_dir / f"sample_{index:05d}.png"
                save_png(image, path)
                written.append(path)
    except OSError as error:
        raise DCGANError(f"cannot write samples: {error}") from error
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        written = sample(args)
    except DCGANError as error:
        exit_with(error)
    extra = f" and {len(written) - 1} images in {args.out_dir}" if args.out_dir else ""
    log.info("wrote %s%s", written[0], extra)


if __name__ == "__main__":
    main()
