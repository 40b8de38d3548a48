"""Where training runs and how it stays reproducible: device choice, seeding, RNG snapshots."""

from __future__ import annotations

import logging
import random
import signal
import threading
from typing import Any, Optional

import numpy as np
import torch

from dcgan.errors import DCGANError

log = logging.getLogger(__name__)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda, else mps, else cpu; an explicit device that is absent is a user error.

    Under torchrun each process gets the GPU of its local rank.
    """
    name = str(getattr(name, "value", name))
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if name == "auto":
        return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DCGANError("device=cuda was asked for but no CUDA GPU is available; use device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DCGANError("device=mps was asked for but MPS is not available; use device=auto")
    return torch.device(name)


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where there is no such file."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: Optional[set[str]] = None) -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16): there bf16
    autocast is faster than float32; elsewhere it is emulated and many times slower."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def configure_backends(device: torch.device, cpu_threads: Optional[int]) -> None:
    """cuDNN picks the fastest convolution algorithms for our fixed shapes; CPU threads as asked."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng() -> dict[str, Any]:
    """Every RNG state as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((
        "MT19937",
        np_state["keys"].numpy().astype(np.uint32),
        np_state["pos"],
        np_state["has_gauss"],
        np_state["cached_gaussian"],
    ))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


class StopNow(BaseException):
    """A second Ctrl-C / SIGTERM: leave at once, without another checkpoint."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM ask the training loop to stop after the current step.

    The first signal only sets `signum` (the loop checks it after each step, then checkpoints
    and exits); a second one raises StopNow wherever the program is.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum
        log.warning("%s received: finishing the current step, then saving a checkpoint "
                    "(send it again to stop at once)", signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        return self.signum is not None


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which stops them cleanly."""
    for signum in StopSignals.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
