"""Data-parallel training under torchrun: the process group and the few collective steps.

    torchrun --standalone --nproc_per_node=4 -m dcgan.cli.train dataset=celeba batch_size=64

Every process trains on its own shard of each epoch with DistributedDataParallel (NCCL on
GPUs, Gloo on the CPU); rank 0 alone writes TensorBoard, samples and checkpoints.

The layout (`Distributed`, `from_environment`) loads no torch, so the entry point and the run
lock use it before torch is imported; the collectives import it when they run.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dcgan.errors import DCGANError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed()


def from_environment() -> Distributed:
    """The layout torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one process if unset)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    return Distributed(rank=int(os.environ["RANK"]), world_size=world_size,
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def start(layout: Distributed, use_cuda: bool) -> None:
    """Join the process group: NCCL when training on CUDA GPUs, Gloo otherwise."""
    import torch
    import torch.distributed as dist

    if not layout.enabled or dist.is_initialized():
        return
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(layout.local_rank)
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    except Exception as error:  # rendezvous failures come in many types
        raise DCGANError(f"could not join the torchrun process group ({backend}): {error}"
                         ) from error


def stop(all_finished: bool = False) -> None:
    """Leave the process group. `all_finished`: this rank finished normally, so every rank
    does, and they first wait for each other (rank 0 writes the report last), rather than one
    tearing its connections down while another still works: a rank that left early was seen
    to abort at exit (gloo, "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_initialized():
        # the run's objects go first: DDP's reducer keeps the process group alive, and a gloo
        # group destroyed later, at interpreter exit, aborts the process
        gc.collect()
        if all_finished:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(value: Any, layout: Distributed) -> Any:
    """Rank 0's value, on every rank."""
    if not layout.enabled:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(value: Any, layout: Distributed) -> list[Any]:
    """Every rank's value, in rank order, on every rank."""
    if not layout.enabled:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * layout.world_size
    dist.all_gather_object(values, value)
    return values


def any_rank(flag: bool, layout: Distributed, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (e.g. one rank got Ctrl-C)."""
    if not layout.enabled:
        return flag
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def mean_over_ranks(value: float, layout: Distributed, device: torch.device) -> float:
    """The mean of `value` over all ranks (the value itself in one process)."""
    if not layout.enabled:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64 if device.type != "mps" else torch.float32,
                          device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / layout.world_size


def tensor_mean_over_ranks(tensor: torch.Tensor, layout: Distributed) -> torch.Tensor:
    """The mean of `tensor` over all ranks, on the device (no host read); itself in one
    process."""
    if not layout.enabled:
        return tensor
    import torch.distributed as dist

    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / layout.world_size


def window_over_ranks(values: dict[str, float], layout: Distributed) -> dict[str, float]:
    """A metric window's means averaged over the ranks (images per second summed), so every
    rank sees the same numbers and decides the same."""
    if not layout.enabled:
        return values
    every_rank = gather_objects(values, layout)
    values = {key: sum(v[key] for v in every_rank) / len(every_rank) for key in values
              if all(key in v for v in every_rank)}
    values["img_per_s"] = values.get("img_per_s", 0.0) * layout.world_size
    return values


def barrier(layout: Distributed) -> None:
    if layout.enabled:
        import torch.distributed as dist

        dist.barrier()


def weights_digest(module: torch.nn.Module) -> str:
    """A checksum of every parameter, to compare replicas across ranks.

    BatchNorm running statistics are left out: each rank updates them from its own batches and
    DistributedDataParallel copies rank 0's over them at the start of each forward pass.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
