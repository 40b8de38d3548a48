"""A decoded-image cache: decode, crop and resize an image-file data set once.

The cache is a uint8 .npy array (N x C x S x S, memory-mapped when read) plus a JSON manifest
(source folder, image size, channels, count, a checksum of the file list). Training from it
does no JPEG decoding at all. It is rebuilt when the file list or the image size changes, and
both files are written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from dcgan.checkpoint import write_atomic
from dcgan.data import ImageFiles, collate_images, default_workers, to_signed_unit
from dcgan.errors import DCGANError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class CachedImages(Dataset):
    """Images from a cache's memory-mapped uint8 array, as float [-1, 1] tensors."""

    def __init__(self, array_path: Path):
        self.array = np.load(array_path, mmap_mode="r")

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_signed_unit(torch.from_numpy(np.array(self.array[index])))

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch with one read of the array (see TensorImages.__getitems__)."""
        return to_signed_unit(torch.from_numpy(self.array[np.asarray(indices)]))


def cache_paths(ds: DictConfig) -> tuple[Path, Path]:
    """(array, manifest) paths for this data set's name, split, limit, channels and size."""
    limit = "all" if ds.limit is None else str(ds.limit)
    stem = f"{ds.name}-{ds.split}-{limit}-{ds.channels}x{ds.image_size}"
    folder = Path(ds.cache_dir).expanduser()
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def file_list_checksum(paths: list[Path], root: Path) -> str:
    """SHA-256 over every file's path (relative to root) and size: changes when files are
    added, removed, renamed or replaced by files of another size."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{os.path.relpath(path, root)}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def expected_manifest(ds: DictConfig, source: ImageFiles) -> dict:
    return {
        "version": CACHE_VERSION,
        "source": str(Path(ds.root).expanduser().resolve()),
        "dataset": ds.name,
        "split": ds.split,
        "image_size": ds.image_size,
        "channels": ds.channels,
        "files": len(source.paths),
        "file_list_sha256": file_list_checksum(source.paths, Path(ds.root).expanduser()),
    }


def read_manifest(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_current(array_path: Path, manifest: Optional[dict], expected: dict) -> bool:
    """The cache exists and was built from exactly these files at this size."""
    if manifest is None or not array_path.is_file():
        return False
    if any(manifest.get(key) != value for key, value in expected.items()):
        return False
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == (manifest.get("count"), expected["channels"],
                           expected["image_size"], expected["image_size"])


def build_cache(ds: DictConfig, source: ImageFiles, array_path: Path, manifest_path: Path,
                num_workers: Optional[int] = None) -> dict:
    """Decode every file of `source` in order into the cache; returns the manifest."""
    started = time.perf_counter()
    array_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = array_path.with_name(f".{array_path.stem}.tmp-{os.getpid()}.npy")
    shape = (len(source), ds.channels, ds.image_size, ds.image_size)
    workers = default_workers(source) if num_workers is None else num_workers
    loader = DataLoader(source, batch_size=256, num_workers=workers, collate_fn=collate_images)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        count, skipped = 0, []
        for images, bad_paths in loader:
            if bad_paths and ds.on_bad_image == "error":
                raise DCGANError(f"cannot read image {bad_paths[0]} (dataset.on_bad_image=error)")
            skipped += bad_paths
            pixels = images.add(1).mul(127.5).round().to(torch.uint8).numpy()  # exact inverse
            array[count : count + len(pixels)] = pixels
            count += len(pixels)
        array.flush()
        del array
        if skipped:
            log.warning("cache: skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
            _shrink(tmp, count)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, array_path)
    except OSError as error:
        raise DCGANError(f"could not write the cache {array_path}: {error.strerror or error}"
                         ) from error
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {**expected_manifest(ds, source), "count": count, "skipped": len(skipped)}
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("cache: %d images decoded into %s in %.1f s", count, array_path,
             time.perf_counter() - started)
    return manifest


def _shrink(path: Path, count: int) -> None:
    """Rewrite the array file keeping only its first `count` images."""
    full = np.load(path, mmap_mode="r")
    kept = np.array(full[:count])
    del full
    np.save(path, kept)


def cached_dataset(ds: DictConfig, source: ImageFiles) -> CachedImages:
    """The cache for `source`, built (or rebuilt) first if it is missing or stale."""
    array_path, manifest_path = cache_paths(ds)
    expected = expected_manifest(ds, source)
    if not is_current(array_path, read_manifest(manifest_path), expected):
        log.info("cache: building %s from %d files", array_path, len(source))
        build_cache(ds, source, array_path, manifest_path)
    else:
        log.info("cache: using %s", array_path)
    return CachedImages(array_path)
