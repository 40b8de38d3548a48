"""`dcgan-prepare`: decode an image-file data set once into the cache training reads.

    dcgan-prepare dataset=celeba dataset.root=data/celeba
    dcgan-train dataset=celeba dataset.root=data/celeba dataset.cache=true

Takes the same dataset overrides as dcgan-train (the same config is composed).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dcgan.cache import build_cache, cache_paths
from dcgan.config import config_dir, register_configs, validate
from dcgan.data import build_dataset
from dcgan.errors import DCGANError, exit_with

log = logging.getLogger("dcgan.prepare")

USAGE = ("usage: dcgan-prepare dataset=celeba|folder dataset.root=PATH [dataset.* overrides]\n"
         "Decodes, crops and resizes every image once into dataset.cache_dir "
         "(default data/cache); train from it with dataset.cache=true.")


def compose_overrides(overrides: Sequence[str]):
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DCGANError(f"bad override: {first_line}") from error


def prepare(overrides: Sequence[str]) -> None:
    cfg = compose_overrides(overrides)
    validate(cfg)
    if cfg.dataset.name not in ("celeba", "folder"):
        raise DCGANError(f"dataset={cfg.dataset.name} is already decoded in memory; "
                         "the cache is for image-file data sets (celeba, folder)")
    OmegaConf.update(cfg, "dataset.cache", False)
    files = build_dataset(cfg.dataset)  # the decode path, which the cache must reproduce
    array_path, manifest_path = cache_paths(cfg.dataset)
    manifest = build_cache(cfg.dataset, files, array_path, manifest_path, cfg.num_workers)
    log.info("prepared %d images in %s; train with: dcgan-train dataset=%s dataset.root=%s "
             "dataset.cache=true", manifest["count"], array_path, cfg.dataset.name,
             cfg.dataset.root)


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(USAGE + "\n")
        return
    try:
        prepare(args)
    except DCGANError as error:
        exit_with(error)


if __name__ == "__main__":
    main()
