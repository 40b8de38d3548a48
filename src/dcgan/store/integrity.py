"""Digests of what checkpoints and generator files hold, so a flipped bit, a torn copy or an
edited field is caught when the file is loaded, not trained on or shipped.

torch's zip container does not check its CRCs on load and safetensors has no checksum, so each
file carries its own SHA-256: a checkpoint under the key `digest` (with `format` naming the
version that has one), a generator file in its metadata. The digest covers everything in the
file but itself: every tensor (dtype, shape and bytes, read in place, without a copy, on the
CPU) and every other value (config, counters, architecture), in a fixed order.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np
import torch

DIGEST_KEY = "digest"
FORMAT_KEY = "format"
CHECKPOINT_FORMAT = "dcgan-checkpoint/2"  # /1 (no `format` key): before digests


def tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's bytes in memory order as a uint8 array: a view, no copy, for any dense
    layout (contiguous, channels_last, other permutations) of a CPU tensor."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if not tensor.is_contiguous():
        order = sorted(range(tensor.dim()), key=lambda dim: -tensor.stride(dim))
        permuted = tensor.permute(order)
        tensor = permuted if permuted.is_contiguous() else tensor.contiguous()
    return tensor.reshape(-1).view(torch.uint8).numpy()


def _feed(digest: Any, name: str, value: Any) -> None:
    """Add one named value (nested dicts, lists, tensors, primitives) to the digest."""
    if isinstance(value, torch.Tensor):
        digest.update(f"{name}:tensor:{value.dtype}:{tuple(value.shape)}:".encode())
        digest.update(tensor_bytes(value))
    elif isinstance(value, Mapping):
        digest.update(f"{name}:dict:{len(value)}:".encode())
        for key in sorted(value, key=str):
            _feed(digest, f"{name}/{key}", value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{name}:{type(value).__name__}:{len(value)}:".encode())
        for index, item in enumerate(value):
            _feed(digest, f"{name}/{index}", item)
    else:
        digest.update(f"{name}:{type(value).__name__}:{value!r};".encode())


def state_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of everything in a checkpoint payload but its digest."""
    digest = hashlib.sha256()
    _feed(digest, "", {key: value for key, value in payload.items() if key != DIGEST_KEY})
    return digest.hexdigest()


def generator_file_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
                          ) -> str:
    """SHA-256 (hex) of a generator file's tensors and its metadata but the digest."""
    digest = hashlib.sha256()
    _feed(digest, "tensors", tensors)
    _feed(digest, "metadata", {k: v for k, v in metadata.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def seal(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its format and digest added (a new dict; tensors are not copied)."""
    sealed = {**payload, FORMAT_KEY: CHECKPOINT_FORMAT}
    sealed.pop(DIGEST_KEY, None)
    sealed[DIGEST_KEY] = state_digest(sealed)
    return sealed
