"""`dcgan-sample`: images from a trained generator (latents come from dcgan.nets.latents).

    dcgan-sample --ckpt runs/celeba/2026-11-22_10-00-00 --n 64 --out faces.png --seed 1
    dcgan-sample --ckpt RUN --seeds 0-35,40,42 --truncation 0.7   # one image per seed
    dcgan-sample --ckpt RUN --interpolate 8 --out walk.png        # two latents, a strip + GIF
    dcgan-sample --ckpt RUN --keyframes 6 --interpolate 12 --grid 3   # looping walks, GIF (+MP4)

A conditional model (condition=class or attributes) is asked for labels:
    dcgan-sample --ckpt RUN --class 7 --n 16          # by name or id
    dcgan-sample --ckpt RUN --per-class 8             # a grid, one row per class
    dcgan-sample --ckpt RUN --attrs Smiling,-Eyeglasses   # set / unset; the rest from real rows
Without these, each image's label is drawn as training drew them (from --seed); an
interpolation, a walk or --seeds keeps one label for all of its images.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from dcgan.errors import ArgumentParser, DCGANError, reports_errors

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from dcgan.nets.conditioning import FakeLabels
    from dcgan.nets.models import Generator

# torch, the networks and the image writers are imported where they are used, so that --help
# and a usage error answer at once.

log = logging.getLogger("dcgan.cli.sample")

WALK_FRAME_MS = 80  # a walk's frames: 12.5 a second


def render(generator: Generator, noise: torch.Tensor, device: torch.device,
           labels: Optional[torch.Tensor] = None, batch_size: int = 256) -> torch.Tensor:
    """G(noise [, labels]) in [-1, 1] on the CPU, in batches; `labels`: one label vector per
    image, or one for all of them (a conditional generator)."""
    import torch

    if labels is not None and len(labels) == 1:
        labels = labels.expand(len(noise), -1)
    with torch.no_grad():
        parts = []
        for i in range(0, len(noise), batch_size):
            z = noise[i : i + batch_size].to(device)
            parts.append((generator(z) if labels is None
                          else generator(z, labels[i : i + batch_size].to(device))).cpu())
    return torch.cat(parts)


def generate(generator: Generator, n: int, seed: int, device: torch.device,
             psi: float = 1.0, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """n images in [-1, 1]; the noise comes from its own CPU generator, so a seed fixes them."""
    from dcgan.nets.latents import batch_latents

    return render(generator, batch_latents(n, generator.arch.nz, seed, psi), device, labels)


def generate_seeds(generator: Generator, seeds: list[int], device: torch.device,
                   psi: float = 1.0, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One image per seed, each drawn and rendered alone: seed s gives the same image
    whatever else is asked for."""
    import torch

    from dcgan.nets.latents import seed_latent

    return torch.cat([render(generator, seed_latent(seed, generator.arch.nz, psi)[None], device,
                             labels) for seed in seeds])


def interpolate(generator: Generator, frames: int, seed: int, device: torch.device,
                psi: float = 1.0, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """frames images in [-1, 1] along the slerp path between two latents drawn from seed."""
    from dcgan.nets.latents import interpolation_noise

    return render(generator, interpolation_noise(generator.arch.nz, frames, seed, psi), device,
                  labels)


def requested_labels(prior: Optional[FakeLabels], n: int, args: argparse.Namespace,
                     one_for_all: bool = False) -> Optional[torch.Tensor]:
    """The label vectors of n images [n, K] (or [1, K], `one_for_all`) as --class, --per-class
    or --attrs ask, else drawn as training drew them, from --seed; None when unconditional."""
    import torch

    from dcgan.nets.conditioning import parse_attribute_settings

    asked = [flag for flag, value in (("--class", args.class_name), ("--per-class",
             args.per_class), ("--attrs", args.attrs)) if value is not None]
    if prior is None:
        if asked:
            raise DCGANError(f"{asked[0]} is for a conditional model (trained with condition="
                             "class or attributes); this one is unconditional")
        return None
    space, rng = prior.space, torch.Generator().manual_seed(args.seed)
    count = 1 if one_for_all else n
    if args.per_class is not None:
        if space.kind != "class":
            raise DCGANError("--per-class is for a model conditioned on classes; this one is "
                             "conditioned on attributes: use --attrs")
        return space.vectors(prior.every_class(args.per_class).cpu())
    if args.class_name is not None:
        wanted = space.class_id(args.class_name)
        return space.vectors(torch.full((count,), wanted, dtype=torch.long))
    values = prior.draw(count, generator=rng).cpu()
    if args.attrs is not None:
        for column, value in parse_attribute_settings(space, args.attrs).items():
            values[:, column] = value
    return space.vectors(values)


def walk_frames(generator: Generator, args: argparse.Namespace, device: torch.device,
                labels: Optional[torch.Tensor] = None) -> list[Image.Image]:
    """--keyframes M --interpolate K [--grid R]: R x R independent looping walks, walk w
    through the keyframes of seeds seed + w*M ... seed + w*M + M-1; one grid per frame."""
    import torch

    from dcgan.files.images import image_grid, to_pil
    from dcgan.nets.latents import keyframe_walk, seed_latent

    nz, keyframes, walks = generator.arch.nz, args.keyframes, args.grid * args.grid
    paths = [keyframe_walk([seed_latent(args.seed + w * keyframes + i, nz, args.truncation)
                            for i in range(keyframes)], args.interpolate) for w in range(walks)]
    images = render(generator, torch.cat(paths), device, labels)  # walk-major
    frames = images.view(walks, keyframes * args.interpolate, *images.shape[1:])
    return [to_pil(image_grid(frames[:, t], nrow=args.grid)) for t in range(frames.shape[1])]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = ArgumentParser(
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
    parser.add_argument("--seeds", type=_seeds, default=None, metavar="LIST",
                        help="one image per seed, e.g. 0-35,40,42: DIR/seed0042.png each "
                        "(--out-dir, default RUN_DIR/samples/seeds) and a grid of them")
    parser.add_argument("--truncation", type=_psi, default=1.0, metavar="PSI",
                        help="0 < PSI <= 1: latent coordinates kept within the central PSI of "
                        "the normal's mass (others drawn again): less variety, cleaner images; "
                        "1 = no truncation (default)")
    parser.add_argument("--generator", choices=("ema", "raw"), default="ema",
                        help="the moving average of G (default, when the run had one) or the "
                        "raw generator")
    parser.add_argument("--keyframes", type=_frame_count, default=None, metavar="M",
                        help="with --interpolate K: a looping walk through M seeded keyframes, "
                        "K frames from each to the next, as a GIF (and an MP4 beside it when "
                        "imageio-ffmpeg is installed)")
    parser.add_argument("--grid", type=_positive, default=1, metavar="R",
                        help="with --keyframes: R x R independent walks in one animation")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="also write each image as DIR/sample_00000.png, ...")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    add_label_arguments(parser)
    args = parser.parse_args(argv)
    if args.class_name is not None and args.per_class is not None:
        parser.error("--class and --per-class: choose one")
    return args


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """What a conditional model's samples are asked for."""
    parser.add_argument("--class", dest="class_name", default=None, metavar="C",
                        help="a conditional model: images of class C (a name such as cat, or "
                        "an id)")
    parser.add_argument("--per-class", type=_positive, default=None, metavar="N",
                        help="a conditional model: N images of every class, one row each")
    parser.add_argument("--attrs", type=_attributes, default=None, metavar="LIST",
                        help="a model conditioned on attributes: e.g. Smiling,-Eyeglasses sets "
                        "Smiling and unsets Eyeglasses; the others come from real faces")


def _attributes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one attribute, e.g. Smiling,-Eyeglasses")
    return names


def _seeds(text: str) -> list[int]:
    from dcgan.nets.latents import parse_seeds

    return parse_seeds(text)


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


def _psi(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _default_out(checkpoint: Path, args: argparse.Namespace) -> Path:
    from dcgan.store.checkpoints import run_dir_of

    psi = f"_psi{args.truncation:g}" if args.truncation < 1 else ""
    if args.keyframes:
        grid = f"_grid{args.grid}" if args.grid > 1 else ""
        name = f"walk_seed{args.seed}_m{args.keyframes}_k{args.interpolate}{grid}{psi}.gif"
    elif args.seeds:
        name = f"seeds_{args.seeds[0]}-{args.seeds[-1]}_n{len(args.seeds)}{psi}.png"
    elif args.interpolate:
        name = f"interp_seed{args.seed}_k{args.interpolate}{psi}.png"
    elif args.per_class:
        name = f"per_class_seed{args.seed}_n{args.per_class}{psi}.png"
    else:
        name = f"sample_seed{args.seed}_n{args.n}{psi}.png"
    if args.class_name is not None:
        name = f"class_{args.class_name}_{name}"
    return run_dir_of(checkpoint) / "samples" / name


def check_args(args: argparse.Namespace, out: Path) -> None:
    """Combinations that cannot mean anything, refused in one line."""
    from dcgan.files.video import VIDEO_EXTRA, video_available

    if args.keyframes and not args.interpolate:
        raise DCGANError("--keyframes M needs --interpolate K (frames from each keyframe to the "
                         "next)")
    if args.grid > 1 and not args.keyframes:
        raise DCGANError("--grid R lays out R x R walks: use it with --keyframes M")
    if args.seeds and (args.keyframes or args.interpolate):
        raise DCGANError("--seeds draws one image per seed; use --seed with --interpolate")
    if args.per_class and (args.seeds or args.interpolate or args.keyframes):
        raise DCGANError("--per-class makes a grid of every class; use --class C with --seeds, "
                         "--interpolate or --keyframes")
    if args.keyframes and out.suffix.lower() not in (".gif", ".mp4"):
        raise DCGANError(f"--out {out}: a walk is an animation; give a .gif or .mp4 path")
    if args.keyframes and out.suffix.lower() == ".mp4" and not video_available():
        raise DCGANError(f"--out {out}: writing MP4 needs imageio-ffmpeg: {VIDEO_EXTRA}")
    if args.interpolate and not args.keyframes and out.suffix.lower() == ".gif":
        raise DCGANError(f"--out {out}: with --interpolate, --out is the PNG strip and the GIF "
                         "is written beside it; give a .png path")


def sample(args: argparse.Namespace) -> list[Path]:
    """Write what was asked for; returns the paths written, the grid, strip or walk first."""
    from dcgan.files.images import save_gif
    from dcgan.runtime.process import resolve_device
    from dcgan.store.checkpoints import (
        load_generator,
        load_labels,
        resolve_checkpoint,
        run_dir_of,
    )

    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    out = args.out or _default_out(checkpoint, args)
    check_args(args, out)
    device = resolve_device(args.device)
    generator = load_generator(checkpoint, device, ema=args.generator == "ema")
    prior = load_labels(checkpoint, device) if generator.arch.conditional else None
    one_label = bool(args.keyframes or args.seeds or args.interpolate)
    labels = requested_labels(prior, args.n, args, one_for_all=one_label)
    try:
        if args.keyframes:
            return write_walk(walk_frames(generator, args, device, labels), out)
        if args.seeds:
            images = generate_seeds(generator, args.seeds, device, args.truncation, labels)
            out_dir = args.out_dir or run_dir_of(checkpoint) / "samples" / "seeds"
            names = [f"seed{seed:04d}.png" for seed in args.seeds]
            return _write(images, args.nrow or math.ceil(math.sqrt(len(images))), out,
                          out_dir, names)
        if args.interpolate:
            images = interpolate(generator, args.interpolate, args.seed, device, args.truncation,
                                 labels)
            written = _write(images, args.interpolate, out, args.out_dir)
            save_gif(images, out.with_suffix(".gif"))
            return [written[0], out.with_suffix(".gif"), *written[1:]]
        if args.per_class:
            images = generate(generator, len(labels), args.seed, device, args.truncation, labels)
            return _write(images, args.nrow or args.per_class, out, args.out_dir)
        images = generate(generator, args.n, args.seed, device, args.truncation, labels)
        return _write(images, args.nrow or math.ceil(math.sqrt(args.n)), out, args.out_dir)
    except OSError as error:
        raise DCGANError(f"cannot write samples: {error}") from error


def _write(images: torch.Tensor, nrow: int, out: Path, out_dir: Optional[Path],
           names: Optional[list[str]] = None) -> list[Path]:
    """The grid at `out`, and each image in `out_dir` (sample_00000.png, ... or `names`)."""
    from dcgan.files.images import image_grid, images_to_uint8, save_png

    save_png(image_grid(images, nrow=nrow), out)
    written = [out]
    if out_dir is not None:
        for index, image in enumerate(images_to_uint8(images)):
            path = out_dir / (names[index] if names else f"sample_{index:05d}.png")
            save_png(image, path)
            written.append(path)
    return written


def write_walk(frames: list[Image.Image], out: Path) -> list[Path]:
    """The walk as a GIF, and as an MP4 beside it (or instead, for an .mp4 --out) when
    imageio-ffmpeg is installed."""
    from dcgan.files.images import write_gif
    from dcgan.files.video import video_available, write_mp4

    gif = out.with_suffix(".gif")
    write_gif(frames, gif, WALK_FRAME_MS)
    written = [gif]
    if video_available():
        write_mp4(frames, out.with_suffix(".mp4"), fps=1000 / WALK_FRAME_MS)
        written.append(out.with_suffix(".mp4"))
    if out.suffix.lower() == ".mp4":
        written.reverse()
    return written


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    log.info("wrote %s", _summary(args, sample(args)))


def _summary(args: argparse.Namespace, written: list[Path]) -> str:
    if args.keyframes:
        return " and ".join(map(str, written))
    if args.interpolate:
        files = f"{written[0]} and {written[1]} ({args.interpolate} frames)"
        singles = written[2:]
    else:
        files, singles = str(written[0]), written[1:]
    return files + (f" and {len(singles)} images in {singles[0].parent}" if singles else "")


if __name__ == "__main__":
    main()
