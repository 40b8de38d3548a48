"""`dcgan-eval`: the quality metrics of a checkpoint, as a table and as one JSON line.

    dcgan-eval --ckpt runs/celeba/2026-11-22_10-00-00 --n 2048
    dcgan-eval --ckpt run/checkpoints/best.pt dataset.root=/data/celeba dataset.split=test
    dcgan-eval --ckpt generator.safetensors dataset=celeba dataset.root=/data/celeba

The real images come from the data set the checkpoint was trained on, unless dataset.*
overrides say otherwise (a generator.safetensors file has no data set: name one).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dcgan.checkpoint import load_checkpoint, load_generator, resolve_checkpoint
from dcgan.config import TrainConfig, from_plain_dict, validate
from dcgan.data import build_dataset
from dcgan.errors import DCGANError, reports_errors
from dcgan.evaluation import Evaluator, format_table
from dcgan.metrics import inception_weights_path
from dcgan.runtime import resolve_device, seed_everything

log = logging.getLogger("dcgan.eval")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dcgan-eval", description="Sliced Wasserstein distance, diversity ratio (and "
        "FID/KID with --fid) of a checkpoint's samples against real images.")
    parser.add_argument("--ckpt", required=True,
                        help="a run directory, a checkpoint (.pt) or a generator.safetensors")
    parser.add_argument("--n", type=int, default=None,
                        help="generated images, and real images compared (default: eval.n_samples)")
    parser.add_argument("--seed", type=int, default=None,
                        help="fixes the real subset, the noise and the SWD projections "
                        "(default: eval.seed)")
    parser.add_argument("--fid", action="store_true", help="also FID and KID (Inception weights)")
    parser.add_argument("--inception-weights", default=None,
                        help="path to pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON to this file")
    parser.add_argument("overrides", nargs="*", metavar="dataset.KEY=VALUE",
                        help="data set overrides, e.g. dataset.root=/data/celeba dataset.split=test")
    return parser.parse_args(argv)


def eval_config(state: Optional[dict], args: argparse.Namespace):
    """The checkpoint's config (or the defaults) with the data set and eval overrides."""
    cfg = from_plain_dict(state["config"]) if state else OmegaConf.structured(TrainConfig)
    for override in args.overrides:
        key, sep, value = override.partition("=")
        if not sep or not (key == "dataset" or key.startswith("dataset.")):
            raise DCGANError(f"cannot use {override!r}: dcgan-eval takes dataset.KEY=VALUE "
                             "overrides only (and dataset=NAME)")
        key = "dataset.name" if key == "dataset" else key
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


def evaluate(args: argparse.Namespace) -> dict:
    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    state = None if checkpoint.suffix == ".safetensors" else load_checkpoint(checkpoint)
    cfg = eval_config(state, args)
    if cfg.eval.fid:
        inception_weights_path(cfg.eval.inception_weights)  # or a one-line how-to-get-it
    device = resolve_device(args.device)
    seed_everything(cfg.eval.seed)
    generator = load_generator(checkpoint, device, state=state)  # read and checked once
    dataset = build_dataset(cfg.dataset)
    evaluator = Evaluator(dataset, cfg.eval.n_samples, generator.arch.nz, cfg.eval.seed,
                          device, cfg.eval.fid, cfg.eval.inception_weights)
    if generator.arch.channels != evaluator.real.shape[1]:
        raise DCGANError(f"{checkpoint} makes {generator.arch.channels}-channel images but "
                         f"{cfg.dataset.name} has {evaluator.real.shape[1]}; name the data set "
                         "it was trained on")
    metrics = evaluator(generator)
    return {"checkpoint": str(checkpoint), "epoch": state["epoch"] if state else None,
            "step": state["step"] if state else None, "dataset": cfg.dataset.name,
            "n": evaluator.n, "seed": cfg.eval.seed, **metrics}


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result = evaluate(args)
    metrics = {key: value for key, value in result.items() if isinstance(value, float)}
    line = json.dumps(result)
    # The table and the JSON line are the command's output: stdout, apart from the log on stderr.
    sys.stdout.write(f"{result['checkpoint']} (epoch {result['epoch']}, {result['n']} images "
                     f"each)\n{format_table(metrics)}\n{line}\n")
    if args.json is not None:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
