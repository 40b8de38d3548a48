"""Checkpoints written while training goes on: the state is copied (a memory copy, the only
part the training loop waits for), then sealed, serialised and written atomically in a
background thread, one write at a time.

A step checkpoint written this way costs the loop a copy of the state instead of the digest,
the serialisation and the fsync. Every guarantee of a synchronous write holds: the write is the
same atomic one (a SIGKILL at any moment leaves the previous file or the new one), writes land
in the order they were asked for, and a failed write is raised at the next `wait`. The thread is
not a daemon, so a process that ends normally finishes the write in hand first.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch


def snapshot(value: Any, into: Any = None) -> Any:
    """A copy of a checkpoint payload that later training cannot change: every tensor copied to
    the CPU with its layout (so its bytes and digest are those of the original), containers
    rebuilt with their types (a state dict's `_metadata` kept), other values deep-copied.

    `into`: an earlier snapshot no longer in use; its tensors are reused where they fit (same
    dtype, shape and strides), so the copy is a memory copy into pages already mapped (a fresh
    86 MB allocation costs several times the copy itself, in page faults)."""
    return _copy(value, into, {}, set())


def _copy(value: Any, into: Any, copies: dict[int, torch.Tensor], used: set[int]) -> Any:
    if isinstance(value, torch.Tensor):
        if id(value) in copies:  # the same tensor twice: one copy, as torch.save would store
            return copies[id(value)]
        source = value.detach()
        fits = (isinstance(into, torch.Tensor) and id(into) not in used
                and into.device.type == "cpu" and into.dtype == source.dtype
                and into.shape == source.shape and into.stride() == source.stride())
        copied = into.copy_(source) if fits else source.to("cpu", copy=True)
        copies[id(value)] = copied
        used.add(id(copied))  # never the target of two tensors
        return copied
    if type(value) in (dict, OrderedDict):  # module and optimiser state dicts, the payload
        earlier = into if isinstance(into, dict) else {}
        copied = type(value)((key, _copy(item, earlier.get(key), copies, used))
                             for key, item in value.items())
        if hasattr(value, "_metadata"):
            copied._metadata = copy.deepcopy(value._metadata)
        return copied
    if type(value) in (list, tuple):
        fits = type(into) is type(value) and len(into) == len(value)
        earlier = into if fits else [None] * len(value)
        return type(value)(_copy(item, before, copies, used)
                           for item, before in zip(value, earlier))
    return copy.deepcopy(value)


class BackgroundWriter:
    """Runs one write at a time in a thread; `submit` waits for the previous one first."""

    def __init__(self) -> None:
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._run, args=(write,),
                                       name="dcgan-checkpoint-writer")
        self.thread.start()

    def _run(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException as error:  # raised in the training thread, at its next wait
            self.error = error

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self) -> None:
        """Until the write in hand is on disk; raises what it raised."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error
