"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded safely.

A checkpoint holds `generator`, `discriminator`, `opt_g`, `opt_d` (state dicts), `epoch`
(epochs completed), `step` (optimiser steps so far), `fixed_noise`, `rng`, `config` (the
composed config as a plain dict) and `arch` (the shapes of the networks).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from dcgan.errors import DCGANError

REQUIRED_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "epoch", "step",
                 "fixed_noise", "rng", "config", "arch")
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def serialize(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename it into place.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DCGANError(f"could not write checkpoint {path}: {error.strerror or error}; "
                         "the previous checkpoint is unchanged") from error
    _fsync_dir(path.parent)


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


def save_checkpoint(payload: dict[str, Any], paths: list[Path]) -> None:
    """Serialise once, then write the same bytes atomically to each path."""
    data = serialize(payload)
    for path in paths:
        write_atomic(path, data)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/last.pt."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / CHECKPOINT_DIR / LAST
        if not candidate.is_file():
            raise DCGANError(f"no checkpoint in run directory {path} (expected {candidate})")
        return candidate
    if not path.exists():
        raise DCGANError(f"checkpoint {path} does not exist")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (the folder above checkpoints/)."""
    checkpoint = checkpoint.resolve()
    if checkpoint.parent.name == CHECKPOINT_DIR:
        return checkpoint.parent.parent
    return checkpoint.parent


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load with weights_only=True (nothing is unpickled blindly) and check it is ours."""
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "refused"
        raise DCGANError(f"{path} is not a safe dcgan checkpoint ({first_line})") from error
    except Exception as error:  # garbage bytes make the unpickler fail in many ways
        raise DCGANError(f"cannot read checkpoint {path}: it is truncated or not a PyTorch "
                         f"file ({type(error).__name__})") from error
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise DCGANError(f"{path} is not a dcgan training checkpoint (found {keys})")
    return payload
