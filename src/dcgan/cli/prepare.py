"""`dcgan-prepare`: decode an image-file data set once into the cache training reads.

    dcgan-prepare dataset=celeba dataset.root=data/celeba
    dcgan-train dataset=celeba dataset.root=data/celeba dataset.cache=true

Takes the same dataset overrides as dcgan-train (the same config is composed).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from dcgan.errors import DCGANError, reports_errors

log = logging.getLogger("dcgan.cli.prepare")

USAGE = ("usage: dcgan-prepare dataset=celeba|folder dataset.root=PATH [dataset.* overrides]\n"
         "Decodes, crops and resizes every image once into dataset.cache_dir "
         "(default data/cache); train from it with dataset.cache=true.")


def prepare(overrides: Sequence[str]) -> None:
    from omegaconf import OmegaConf

    from dcgan.config import compose_config, validate
    from dcgan.data.cache import build_cache, cache_paths
    from dcgan.data.datasets import DATASETS, build_dataset

    cfg = compose_config(overrides)
    validate(cfg)
    if not DATASETS[cfg.dataset.name].cacheable:
        raise DCGANError(f"dataset={cfg.dataset.name} is already decoded in memory; "
                         "the cache is for image-file data sets (celeba, folder)")
    OmegaConf.update(cfg, "dataset.cache", False)
    files = build_dataset(cfg.dataset)  # the decode path, which the cache must reproduce
    array_path, manifest_path = cache_paths(cfg.dataset)
    manifest = build_cache(cfg.dataset, files, array_path, manifest_path, cfg.num_workers)
    log.info("prepared %d images in %s; train with: dcgan-train dataset=%s dataset.root=%s "
             "dataset.cache=true", manifest["count"], array_path, cfg.dataset.name,
             cfg.dataset.root)


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(USAGE + "\n")
        return
    options = [arg for arg in args if arg.startswith("-")]
    if options:
        raise DCGANError(f"unrecognized arguments: {' '.join(options)}; dcgan-prepare takes "
                         "key=value overrides, e.g. dataset=folder dataset.root=PATH")
    prepare(args)


if __name__ == "__main__":
    main()
