"""`dcgan-eval`: the quality metrics of a checkpoint, as a table and as one JSON line.

    dcgan-eval --ckpt runs/celeba/2026-11-22_10-00-00 --n 2048
    dcgan-eval --ckpt run/checkpoints/best.pt dataset.root=/data/celeba dataset.split=test
    dcgan-eval --ckpt generator.safetensors dataset=celeba dataset.root=/data/celeba
    dcgan-eval --real data/celeba/img_align_celeba --fake other_model_samples/ --n 2048
    dcgan-eval --ckpt runs/celeba/2026-11-22_10-00-00 --nearest 8     # does G copy its data?
    dcgan-eval --ckpt runs/mnist10k/2026-11-22_10-00-00 --labels      # class shares of samples

A conditional checkpoint is also scored by a classifier of the real images' labels (trained
once, cached in the run's eval_cache/): the accuracy of its samples at the classes or
attributes asked for; --labels scores an unconditional one's class shares the same way.

The real images come from the data set the checkpoint was trained on, unless dataset.*
overrides say otherwise (a generator.safetensors file has no data set: name one). With --real
and --fake, two folders of images are compared and no checkpoint is needed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from dcgan.errors import ArgumentParser, DCGANError, reports_errors

if TYPE_CHECKING:
    from dcgan.nets.models import Generator

# torch, the config, the data sets and the metrics are imported where they are used, so that
# --help and a usage error answer at once.

log = logging.getLogger("dcgan.eval")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="dcgan-eval", description="Sliced Wasserstein distance, diversity ratio (and "
        "FID/KID with --fid) of a checkpoint's samples against real images.")
    parser.add_argument("--ckpt", default=None,
                        help="a run directory, a checkpoint (.pt) or a generator.safetensors")
    parser.add_argument("--real", type=Path, default=None,
                        help="with --fake: a folder of real images (no checkpoint needed)")
    parser.add_argument("--fake", type=Path, default=None,
                        help="with --real: a folder of generated images")
    parser.add_argument("--size", type=int, default=64,
                        help="--real/--fake: images are resized and centre-cropped to this")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3),
                        help="--real/--fake: compare in RGB (3) or greyscale (1)")
    parser.add_argument("--nearest", type=int, default=None, metavar="K",
                        help="memorisation check: K samples, each beside its nearest training "
                        "images, as a grid PNG (RUN_DIR/samples/nearest_seed<S>.png or --out)")
    parser.add_argument("--out", type=Path, default=None, help="--nearest: the grid's path")
    parser.add_argument("--n", type=int, default=None,
                        help="generated images, and real images compared (default: eval.n_samples)")
    parser.add_argument("--seed", type=int, default=None,
                        help="fixes the real subset, the noise and the SWD projections "
                        "(default: eval.seed)")
    parser.add_argument("--fid", action="store_true", help="also FID and KID (Inception weights)")
    parser.add_argument("--labels", action="store_true",
                        help="an unconditional checkpoint: also the class shares of its samples, "
                        "read by a classifier of the data's labelled real images (conditional "
                        "checkpoints are always scored at their labels)")
    parser.add_argument("--inception-weights", default=None,
                        help="path to pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON to this file")
    parser.add_argument("overrides", nargs="*", metavar="dataset.KEY=VALUE",
                        help="data set overrides, e.g. dataset.root=/data/celeba dataset.split=test")
    return parser.parse_args(argv)


def eval_config(state: Optional[dict], args: argparse.Namespace):
    """The checkpoint's config (or the defaults) with the data set and eval overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from dcgan.config import TrainConfig, closest_keys, from_plain_dict, known_key, validate

    cfg = from_plain_dict(state["config"]) if state else OmegaConf.structured(TrainConfig)
    for override in args.overrides:
        key, sep, value = override.partition("=")
        if not sep or not (key == "dataset" or key.startswith("dataset.")):
            raise DCGANError(f"cannot use {override!r}: dcgan-eval takes dataset.KEY=VALUE "
                             "overrides only (and dataset=NAME)"
                             + closest_keys(key, within="dataset"))
        key = "dataset.name" if key == "dataset" else key
        if not known_key(key):
            raise DCGANError(f"bad override: {override}: the config has no key {key}"
                             + closest_keys(key, within="dataset."))
        try:
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=False)
        except OmegaConfBaseException as error:
            raise DCGANError(f"bad override {override!r}: {error.msg}") from error
    if OmegaConf.is_missing(cfg.dataset, "name"):
        raise DCGANError("a generator file has no data set: name one, e.g. dataset=celeba "
                         "dataset.root=/data/celeba")
    if args.n is not None:
        cfg.eval.n_samples = args.n
    if args.seed is not None:
        cfg.eval.seed = args.seed
    cfg.eval.fid = cfg.eval.fid or args.fid
    cfg.eval.inception_weights = args.inception_weights or cfg.eval.inception_weights
    validate(cfg)
    return cfg


def compare_folders(args: argparse.Namespace) -> dict:
    """--real DIR --fake DIR: the metrics between two folders of images (the same n of each,
    drawn with the seed from the larger one)."""
    from dcgan.config import compose_config, validate
    from dcgan.data.datasets import build_dataset
    from dcgan.quality.evaluator import real_subset
    from dcgan.quality.metrics import compute_metrics, inception_weights_path
    from dcgan.runtime.process import resolve_device

    seed = args.seed if args.seed is not None else 1234
    if args.fid:
        inception_weights_path(args.inception_weights)
    images = {}
    for kind, folder in (("real", args.real), ("fake", args.fake)):
        cfg = compose_config(["dataset=folder", f"dataset.root={folder}",
                              f"dataset.image_size={args.size}",
                              f"dataset.channels={args.channels}"])
        validate(cfg)
        dataset = build_dataset(cfg.dataset)
        images[kind] = real_subset(dataset, args.n or len(dataset), seed)
    n = min(len(images["real"]), len(images["fake"]))
    metrics = compute_metrics(images["real"][:n], images["fake"][:n], seed=seed, fid=args.fid,
                              inception_weights=args.inception_weights,
                              device=resolve_device(args.device))
    return {"checkpoint": None, "real": str(args.real), "fake": str(args.fake), "epoch": None,
            "n": n, "seed": seed, **metrics}


def memorisation_grid(args: argparse.Namespace, generator: Generator, dataset,
                      checkpoint: Path, seed: int) -> Path:
    """--nearest K: K samples, each in a row with its nearest training images."""
    import torch

    from dcgan.files.images import image_grid, save_png
    from dcgan.quality.evaluator import nearest_real
    from dcgan.store.checkpoints import run_dir_of

    noise = torch.randn(args.nearest, generator.arch.nz, 1, 1,
                        generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        samples = generator(noise.to(next(generator.parameters()).device)).float().cpu()
    indices, distances = nearest_real(samples, dataset)
    rows = [torch.stack([sample, *(dataset[int(i)] for i in row)])
            for sample, row in zip(samples, indices)]
    out = args.out or run_dir_of(checkpoint) / "samples" / f"nearest_seed{seed}.png"
    save_png(image_grid(torch.cat(rows), nrow=indices.shape[1] + 1), out)
    log.info("nearest training images (L2 at 32x32) of %d samples: %s; closest distance %.2f, "
             "median %.2f", args.nearest, out, distances[:, 0].min(), distances[:, 0].median())
    return out


def evaluate(args: argparse.Namespace) -> dict:
    from dcgan.quality.evaluator import Evaluator, classifier_cache_path
    from dcgan.quality.metrics import inception_weights_path
    from dcgan.runtime.process import resolve_device, seed_everything
    from dcgan.store.checkpoints import (
        load_checkpoint,
        load_generator,
        resolve_checkpoint,
        run_dir_of,
    )

    if args.real is not None or args.fake is not None:
        if args.real is None or args.fake is None or args.ckpt is not None:
            raise DCGANError("compare two folders with --real DIR --fake DIR (and no --ckpt)")
        return compare_folders(args)
    if args.ckpt is None:
        raise DCGANError("give --ckpt (a run, checkpoint or generator file), or --real DIR "
                         "--fake DIR to compare two folders of images")
    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    state = None if checkpoint.suffix == ".safetensors" else load_checkpoint(checkpoint)
    cfg = eval_config(state, args)
    if cfg.eval.fid:
        inception_weights_path(cfg.eval.inception_weights)  # or a one-line how-to-get-it
    device = resolve_device(args.device)
    seed_everything(cfg.eval.seed)
    generator = load_generator(checkpoint, device, state=state)  # read and checked once
    dataset, label_kind = labelled_dataset(cfg, generator, checkpoint, state, args.labels)
    classifier = (classifier_cache_path(run_dir_of(checkpoint), cfg.dataset, label_kind)
                  if label_kind != "none" else None)
    evaluator = Evaluator(dataset, cfg.eval.n_samples, generator.arch.nz, cfg.eval.seed,
                          device, cfg.eval.fid, cfg.eval.inception_weights,
                          run_feature_cache(checkpoint, cfg), classifier)
    if generator.arch.channels != evaluator.real.shape[1]:
        raise DCGANError(f"{checkpoint} makes {generator.arch.channels}-channel images but "
                         f"{cfg.dataset.name} has {evaluator.real.shape[1]}; name the data set "
                         "it was trained on")
    metrics = evaluator(generator)
    if args.nearest:
        memorisation_grid(args, generator, dataset, checkpoint, cfg.eval.seed)
    return {"checkpoint": str(checkpoint), "epoch": state["epoch"] if state else None,
            "step": state["step"] if state else None, "dataset": cfg.dataset.name,
            "n": evaluator.n, "seed": cfg.eval.seed, **metrics}


def labelled_dataset(cfg: Any, generator: Generator, checkpoint: Path,
                     state: Optional[dict[str, Any]], labels_wanted: bool) -> tuple[Any, str]:
    """(the data set to compare with, the kind of labels it carries: none, class, attributes):
    a conditional generator's own kind (its attributes, in its order), or with --labels the
    data set's class labels."""
    import torch

    from dcgan.data.datasets import DATASETS, build_dataset
    from dcgan.store.checkpoints import load_labels

    arch = generator.arch
    if arch.conditional:
        prior = load_labels(checkpoint, torch.device("cpu"), state)
        attributes = list(prior.space.names) if arch.condition == "attributes" else None
        return build_dataset(cfg.dataset, labels=arch.condition, attributes=attributes), \
            arch.condition
    if not labels_wanted:
        return build_dataset(cfg.dataset), "none"
    if "class" not in DATASETS[cfg.dataset.name].labels:
        raise DCGANError(f"--labels reads class shares, and dataset={cfg.dataset.name} has no "
                         "class labels")
    return build_dataset(cfg.dataset, labels="class"), "class"


def run_feature_cache(checkpoint: Path, cfg: Any) -> Path:
    """Where the real subset's Inception features are cached for a checkpoint: its run's own
    cache (shared with training), or beside a file that is not in a run."""
    from dcgan.quality.evaluator import feature_cache_path
    from dcgan.store.checkpoints import run_dir_of

    return feature_cache_path(run_dir_of(checkpoint), cfg.dataset, cfg.eval)


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result = evaluate(args)
    from dcgan.quality.evaluator import format_table

    metrics = {key: value for key, value in result.items() if isinstance(value, float)}
    line = json.dumps(result)
    # The table and the JSON line are the command's output: stdout, apart from the log on stderr.
    what = (f"{result['checkpoint']} (epoch {result['epoch']}" if result["checkpoint"]
            else f"{result['real']} vs {result['fake']} (")
    sys.stdout.write(f"{what}, {result['n']} images each)\n{format_table(metrics)}\n{line}\n")
    if args.json is not None:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
