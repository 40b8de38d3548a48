"""A decoded-image cache: decode, crop and resize an image-file data set once.

The cache is a uint8 .npy array (N x C x S x S, memory-mapped when read) plus a JSON manifest
(source folder, image size, channels, count, a checksum of the file list). Training from it
does no JPEG decoding at all. It is rebuilt when the file list or the image size changes, and
both files are written atomically (a temporary file renamed into place). The manifest names the
files that could not be decoded, so labels stay with their images (`CachedImages.source_indices`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from dcgan.data.loader import collate_images, default_workers
from dcgan.errors import DCGANError
from dcgan.files.atomic import atomic_path, write_atomic
from dcgan.files.images import images_to_uint8, to_signed_unit

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class CachedImages(Dataset):
    """Images from a cache's memory-mapped uint8 array, as float [-1, 1] tensors.

    `source_indices[i]` is the index in the source files of image i (None: all were decoded,
    image i is file i); `labels` are set by the data set's builder when it was asked for them.
    """

    labels = None

    def __init__(self, array_path: Path, source_indices: Optional[list[int]] = None):
        self.array = np.load(array_path, mmap_mode="r")
        self.source_indices = source_indices

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_signed_unit(torch.from_numpy(np.array(self.array[index])))

    def decoded(self) -> torch.Tensor:
        """All the images, uint8, still memory-mapped (read-only: the feed only gathers)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return torch.from_numpy(self.array)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch with one read of the array (see TensorImages.__getitems__)."""
        return to_signed_unit(torch.from_numpy(self.array[np.asarray(indices)]))


def cache_paths(ds: DictConfig, variant: str = "") -> tuple[Path, Path]:
    """(array, manifest) paths for this data set's name, split, limit, channels and size; a
    variant names another choice of its files (e.g. only the faces that have attributes)."""
    limit = "all" if ds.limit is None else str(ds.limit)
    stem = f"{ds.name}-{ds.split}-{limit}-{ds.channels}x{ds.image_size}"
    stem += f"-{variant}" if variant else ""
    folder = Path(ds.cache_dir).expanduser()
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def file_list_checksum(paths: list[Path], root: Path) -> str:
    """SHA-256 over every file's path (relative to root) and size: changes when files are
    added, removed, renamed or replaced by files of another size."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{os.path.relpath(path, root)}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def expected_manifest(ds: DictConfig, source: Dataset) -> dict:
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
    if manifest.get("skipped") and "skipped_files" not in manifest:
        return False  # which files were skipped is needed to keep labels with their images
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == (manifest.get("count"), expected["channels"],
                           expected["image_size"], expected["image_size"])


def build_cache(ds: DictConfig, source: Dataset, array_path: Path, manifest_path: Path,
                num_workers: Optional[int] = None) -> dict:
    """Decode every file of `source` (an ImageFiles) in order into the cache; returns the
    manifest."""
    if not hasattr(source, "paths"):
        raise DCGANError(f"dataset={ds.name} is read decoded into memory here; the cache is for "
                         "image files (celeba, folder, cifar10 as a folder tree)")
    started = time.perf_counter()
    with atomic_path(array_path) as tmp:
        count, skipped = _decode_into(tmp, ds, source, num_workers)
    root = Path(ds.root).expanduser()
    manifest = {**expected_manifest(ds, source), "count": count, "skipped": len(skipped),
                "skipped_files": [os.path.relpath(path, root) for path in skipped]}
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("cache: %d images decoded into %s in %.1f s", count, array_path,
             time.perf_counter() - started)
    return manifest


def _decode_into(path: Path, ds: DictConfig, source: Dataset, num_workers: Optional[int]
                 ) -> tuple[int, list[str]]:
    """Write the uint8 array of every readable image to `path`; (count, unreadable paths)."""
    shape = (len(source), ds.channels, ds.image_size, ds.image_size)
    workers = default_workers(source) if num_workers is None else num_workers
    loader = DataLoader(source, batch_size=256, num_workers=workers, collate_fn=collate_images)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    count, skipped = 0, []
    for images, bad_paths in loader:
        if bad_paths and ds.on_bad_image == "error":
            raise DCGANError(f"cannot read image {bad_paths[0]} (dataset.on_bad_image=error)")
        skipped += bad_paths
        pixels = images_to_uint8(images).numpy()  # the exact inverse of to_signed_unit
        array[count : count + len(pixels)] = pixels
        count += len(pixels)
    array.flush()
    del array
    if skipped:
        log.warning("cache: skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
        _shrink(path, count)
    return count, skipped


def _shrink(path: Path, count: int) -> None:
    """Rewrite the array file keeping only its first `count` images."""
    full = np.load(path, mmap_mode="r")
    kept = np.array(full[:count])
    del full
    np.save(path, kept)


def cached_dataset(ds: DictConfig, source: Dataset, variant: str = "") -> CachedImages:
    """The cache for `source`, built (or rebuilt) first if it is missing or stale."""
    array_path, manifest_path = cache_paths(ds, variant)
    expected = expected_manifest(ds, source)
    manifest = read_manifest(manifest_path)
    if not is_current(array_path, manifest, expected):
        log.info("cache: building %s from %d files", array_path, len(source))
        manifest = build_cache(ds, source, array_path, manifest_path)
    else:
        log.info("cache: using %s", array_path)
    return CachedImages(array_path, source_indices(manifest, source, Path(ds.root).expanduser()))


def source_indices(manifest: dict, source: Dataset, root: Path) -> Optional[list[int]]:
    """The index in `source` of each cached image; None when every file was decoded."""
    skipped = set(manifest.get("skipped_files", ()))
    if not skipped:
        return None
    return [index for index, path in enumerate(source.paths)
            if os.path.relpath(path, root) not in skipped]
