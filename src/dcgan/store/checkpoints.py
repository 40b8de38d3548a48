"""Checkpoints: plain dicts of tensors and primitives, written atomically, loaded safely.

A checkpoint holds the GAN pair's state (`generator`, `discriminator`, `opt_g`, `opt_d`,
`scaler_g`, `scaler_d`, `generator_ema` with EMA on, `arch`: the shapes of the networks), the
loop's position (`epoch`: epochs completed, `step`: optimiser steps so far, `batch_in_epoch`:
batches of the current epoch already trained, for a mid-epoch stop), `rng` (and `rng_per_rank`),
`config` (the composed config as a plain dict) and `hooks`: each hook's own state under its name
(`samples`: the fixed noise, `evaluation`, `checkpoints`: the best value, `collapse`).
Checkpoints written before hooks existed keep those states at the top level; `load_checkpoint`
moves them where the hooks look (`upgrade_legacy`).

With `ema.recalibrate_bn`, `sampling_bn` holds the BatchNorm statistics re-estimated for the
generator that samples and `sampling_bn_step` the step whose weights they were estimated for:
the checkpoint's own step, except in a step checkpoint, which keeps the newest estimate rather
than make one (`load_generator` re-estimates then).

Beside them, `generator.safetensors` holds only the generator weights, with the architecture
in the file's metadata: the file to share, loadable without pickle at all.
"""

from __future__ import annotations

import io
import json
import logging
import mmap
import os
import pickle
import re
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from dcgan.errors import DCGANError
from dcgan.files.atomic import atomic_path, link_atomic, write_atomic
from dcgan.nets.batchnorm import recalibrate_batchnorm
from dcgan.nets.conditioning import FakeLabels
from dcgan.nets.models import Architecture, Generator
from dcgan.store.integrity import (
    DIGEST_KEY,
    FORMAT_KEY,
    generator_file_digest,
    seal,
    state_digest,
)

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "epoch", "step", "rng",
                 "config", "arch")
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"  # the best evaluated epoch by eval.select
ABANDONED_DIR = "abandoned"  # numbered checkpoints a collapse rollback left behind
GENERATOR_FILE = "generator.safetensors"
NUMBERED = re.compile(r"^(epoch|step)_(\d+)\.pt$")
GENERATOR_FORMAT = "dcgan-generator/2"  # with a digest in the metadata
LABEL_ROWS = "label_rows"  # a generator file's real attribute rows (attribute-conditional)
GENERATOR_FORMATS_BEFORE_DIGESTS = ("dcgan-generator/1",)


class CorruptedFile(DCGANError):
    """A checkpoint or generator file whose contents do not match the digest stored in it."""


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def step_checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def serialize(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(payload: dict[str, Any], paths: list[Path]) -> None:
    """Seal (format and digest), serialise once, straight into a temporary file that is then
    fsynced and renamed onto the first path, and give the others the same file: a hard link
    where the file system allows it (no second copy on disk: last.pt and best.pt cost nothing
    beside epoch_NNN.pt), else a copy."""
    sealed = seal(payload)
    with atomic_path(paths[0]) as tmp, open(tmp, "wb") as handle:
        torch.save(sealed, handle)  # through a Python file, a full disk is an OSError
    for path in paths[1:]:
        with open(paths[0], "rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            link_atomic(paths[0], path, data)  # the bytes are read only if a copy is needed


def prune_numbered(folder: Path, keep: int) -> None:
    """Keep the newest `keep` epoch_*.pt and the newest `keep` step_*.pt (0 keeps all)."""
    if keep <= 0:
        return
    for kind in ("epoch", "step"):
        numbered = sorted(
            (int(match.group(2)), path) for path in folder.iterdir()
            if (match := NUMBERED.match(path.name)) and match.group(1) == kind
        )
        for _, path in numbered[:-keep]:
            path.unlink(missing_ok=True)


def save_generator(state_dict: dict[str, torch.Tensor], arch: dict[str, Any], path: Path,
                   labels: Optional[dict[str, Any]] = None, **info: int) -> None:
    """The generator's weights as safetensors, its architecture in the metadata; a
    conditional generator's labels (FakeLabels.state_dict: names, class counts in the
    metadata, attribute rows as the tensor LABEL_ROWS) beside them."""
    metadata = {"format": GENERATOR_FORMAT, "arch": json.dumps(arch),
                **{key: str(value) for key, value in info.items()}}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state_dict.items()}
    if labels is not None:
        described = {key: value for key, value in labels.items() if key not in ("rows", "counts")}
        if labels.get("counts") is not None:
            described["counts"] = [int(count) for count in labels["counts"]]
        metadata["labels"] = json.dumps(described)
        if labels.get("rows") is not None:
            tensors[LABEL_ROWS] = labels["rows"].cpu().contiguous()
    metadata[DIGEST_KEY] = generator_file_digest(tensors, metadata)
    write_atomic(path, safetensors_bytes(tensors, metadata=metadata))


def load_generator_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, arch) from a generator.safetensors file."""
    tensors, metadata = read_generator_file(path)
    tensors.pop(LABEL_ROWS, None)
    return tensors, json.loads(metadata["arch"])


def read_generator_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(every tensor, the metadata) of a generator.safetensors file, its digest verified."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise DCGANError(f"cannot read {path}: it is truncated or not a safetensors file "
                         f"({error})") from error
    known = (GENERATOR_FORMAT, *GENERATOR_FORMATS_BEFORE_DIGESTS)
    if metadata.get("format") not in known or "arch" not in metadata:
        raise DCGANError(f"{path} is not a dcgan generator file (no architecture in its metadata)")
    verify_generator_file(path, tensors, metadata)
    return tensors, metadata


def load_labels(checkpoint: Path, device: torch.device,
                state: Optional[dict[str, Any]] = None) -> Optional[FakeLabels]:
    """A conditional generator's labels (names; what its training drew fakes from) from a
    training checkpoint or a generator file; None for an unconditional one."""
    if checkpoint.suffix == ".safetensors":
        tensors, metadata = read_generator_file(checkpoint)
        if "labels" not in metadata:
            return None
        labels = json.loads(metadata["labels"])
        if "counts" in labels:
            labels["counts"] = torch.tensor(labels["counts"])
        if LABEL_ROWS in tensors:
            labels["rows"] = tensors[LABEL_ROWS]
    else:
        state = state if state is not None else load_checkpoint(checkpoint)
        labels = state.get("labels")
    return FakeLabels.from_state(labels, device) if labels is not None else None


def verify_generator_file(path: Path, tensors: dict[str, torch.Tensor],
                          metadata: dict[str, str]) -> None:
    if metadata["format"] in GENERATOR_FORMATS_BEFORE_DIGESTS:
        log.warning("%s was written before generator files carried a digest: loaded without "
                    "checking it", path)
    elif generator_file_digest(tensors, metadata) != metadata.get(DIGEST_KEY):
        raise CorruptedFile(f"{path} is corrupted: its weights or metadata do not match the "
                            "digest stored in it (damaged or edited since it was written); "
                            "export it again from a checkpoint of the run")


def load_generator(checkpoint: Path, device: torch.device, ema: bool = True,
                   state: Optional[dict[str, Any]] = None) -> Generator:
    """The generator of a training checkpoint or of a generator.safetensors file, in eval
    mode. A run trained with EMA gives its moving average (the generator its samples and
    evaluations were made with) unless ema=False. The generator that samples carries the
    BatchNorm statistics the run re-estimated for it (ema.recalibrate_bn), else its running
    statistics; a step checkpoint, which holds no estimate for its own weights, has them
    re-estimated here, as the run would have. `state`: the checkpoint already loaded (and
    verified), not read again."""
    estimate_here = False
    if checkpoint.suffix == ".safetensors":
        weights, arch = load_generator_file(checkpoint)
    else:
        state = state if state is not None else load_checkpoint(checkpoint)
        sampling = ema or "generator_ema" not in state  # the weights the run sampled with
        weights = state.get("generator_ema", state["generator"]) if ema else state["generator"]
        statistics = sampling_statistics(state) if sampling else None
        if statistics is not None:
            weights = {**weights, **statistics}
        estimate_here = sampling and statistics is None and recalibrates(state)
        arch = state["arch"]
    try:
        generator = Generator(Architecture(**arch))
        generator.load_state_dict(weights)
    except (TypeError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DCGANError(f"{checkpoint}: the generator weights do not match the architecture "
                         f"recorded in it ({first_line})") from error
    generator = generator.to(device).eval()
    if estimate_here:
        log.info("%s holds no BatchNorm statistics for its weights (a step checkpoint): "
                 "re-estimating them", checkpoint)
        prior = load_labels(checkpoint, device, state) if generator.arch.conditional else None
        recalibrate_batchnorm(generator, generator.arch.nz,
                              labels=prior.vectors if prior is not None else None)
    return generator


def sampling_statistics(state: dict[str, Any]) -> Optional[dict[str, torch.Tensor]]:
    """The re-estimated BatchNorm statistics of a checkpoint if they belong to its weights:
    a step checkpoint keeps the newest estimate, made for an earlier step
    (`sampling_bn_step`); checkpoints from before step checkpoints skipped it have no step."""
    statistics = state.get("sampling_bn")
    estimated_at = state.get("sampling_bn_step", state["step"])
    return statistics if statistics is not None and estimated_at == state["step"] else None


def recalibrates(state: dict[str, Any]) -> bool:
    """Whether the run re-estimated its sampling generator's statistics (ema.recalibrate_bn)."""
    ema = (state.get("config") or {}).get("ema") or {}
    return bool(ema.get("recalibrate_bn", False))


def resolve_checkpoint(path: str | os.PathLike, allow_generator: bool = False) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/last.pt (or, where a
    generator alone will do, its checkpoints/generator.safetensors)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / CHECKPOINT_DIR / LAST, path / LAST]
        if allow_generator:
            candidates.append(path / CHECKPOINT_DIR / GENERATOR_FILE)
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise DCGANError(f"no checkpoint in {path} (expected {candidates[0]})")
        return found
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
    verify_checkpoint(path, payload)
    return upgrade_legacy(payload)


def verify_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """The digest stored in the checkpoint must be that of its contents; a checkpoint from
    before digests (no `format`) loads unchecked, with a notice."""
    if DIGEST_KEY in payload:
        if state_digest(payload) != payload[DIGEST_KEY]:
            raise CorruptedFile(f"{path} is corrupted: its contents do not match the digest "
                                "stored in it (damaged since it was written: a copy, a disk); "
                                "resume from another checkpoint of the run")
    elif FORMAT_KEY in payload:
        raise CorruptedFile(f"{path} is corrupted: it has lost the digest its format "
                            f"({payload[FORMAT_KEY]}) always carries, so its contents cannot be "
                            "trusted; resume from another checkpoint of the run")
    else:
        log.warning("%s was written before checkpoints carried a digest: loaded without "
                    "checking it", path)


def upgrade_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint from before the hooks kept their own state (commit 7642f76 and earlier):
    its fixed noise, evaluation, best value and collapse state moved under `hooks`."""
    if "hooks" in payload:
        return payload
    collapse = payload.get("collapse", {})
    payload["hooks"] = {
        "samples": ({"fixed_noise": payload.pop("fixed_noise")} if "fixed_noise" in payload
                    else {}),
        "evaluation": {"metrics": payload.pop("eval_metrics", {})},
        "checkpoints": {"best_value": payload.pop("best_value", float("inf"))},
        "collapse": {"detector": collapse.get("detector", {}),
                     "rollbacks": collapse.get("rollbacks", 0),
                     "stabilisers": {"noise_start_step": collapse.get("noise_start_step", 0)}},
    }
    payload.pop("collapse", None)
    return payload


def resumable_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first: last.pt, then numbered ones by modification time."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    numbered = [path for path in folder.iterdir() if NUMBERED.match(path.name)]
    numbered.sort(key=lambda path: path.stat().st_mtime_ns, reverse=True)
    last = folder / LAST
    return ([last] if last.is_file() else []) + numbered


def load_newest_valid(run_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint of a run that loads (each one that does not is reported), or
    None when the run has none. When it has some and none loads, that is an error: starting
    afresh would write over them."""
    candidates = resumable_checkpoints(run_dir)
    for path in candidates:
        try:
            return path, load_checkpoint(path)
        except DCGANError as error:
            log.warning("skipping checkpoint that does not load: %s", error)
    if candidates:
        raise DCGANError(f"none of the {len(candidates)} checkpoints in "
                         f"{run_dir / CHECKPOINT_DIR} loads (each is reported above); nothing "
                         "was started, so they stay as they are: resume from a copy you trust "
                         "with resume=PATH, or train afresh in another run directory")
    return None


def checkpoint_step(path: Path) -> Optional[int]:
    """The step a checkpoint was saved at, without reading its tensors (None: unreadable)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(payload["step"])
    except Exception as error:  # torn, foreign or unsafe: the caller passes it over
        log.warning("passing over %s, which does not load (%s)", path, type(error).__name__)
        return None


def newest_before(folder: Path, before_step: int) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest numbered checkpoint (epoch_*.pt, step_*.pt) of a step before `before_step`
    that loads; one that does not (torn, corrupted) is reported and passed over."""
    steps = {path: checkpoint_step(path) for path in sorted(folder.glob("*.pt"))
             if NUMBERED.match(path.name)}
    earlier = sorted(((step, path) for path, step in steps.items()
                      if step is not None and step < before_step), reverse=True)
    for _, path in earlier:
        try:
            return path, load_checkpoint(path)
        except DCGANError as error:
            log.warning("passing over a checkpoint that does not load: %s", error)
    return None


def set_aside_after(folder: Path, step: int) -> None:
    """Move numbered checkpoints newer than `step` (an abandoned course) to abandoned/."""
    for path in sorted(folder.glob("*.pt")):
        saved = checkpoint_step(path) if NUMBERED.match(path.name) else None
        if saved is not None and saved > step:
            (folder / ABANDONED_DIR).mkdir(exist_ok=True)
            os.replace(path, folder / ABANDONED_DIR / path.name)
