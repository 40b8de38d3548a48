"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed into place.

A crash at any moment leaves either the old file or the new one, never a torn file. Used for
checkpoints, the generator file and the decoded-image cache.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dcgan.errors import DCGANError

TEMPORARY_GLOB = ".*.tmp-*"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to (it keeps the suffix, so
    numpy and friends do not append one); on success it is fsynced and renamed over `path`.

    An OSError becomes a DCGANError that says the previous file is unchanged; the temporary
    file is removed whatever happens (also on a second Ctrl-C in the middle of a write).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise DCGANError(f"could not write {path}: {error.strerror or error}; "
                         "the previous file is unchanged") from error
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def link_atomic(source: Path, path: Path, data: bytes) -> None:
    """Make `path` the same file as `source` (which holds `data`), atomically: a hard link
    renamed into place, or where links are not possible (another file system, FAT, some
    network mounts) a copy of `data` written atomically."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        write_atomic(path, data)
        return
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete half-written files a killed process left behind (never a finished file)."""
    for tmp in folder.glob(TEMPORARY_GLOB):
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
