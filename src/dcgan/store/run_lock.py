"""One writer per run directory: an exclusive lock on RUN_DIR/.lock for the whole of a run.

The lock is flock(2) on that file, so the operating system lets go of it when the process ends,
however it ends: a run killed with SIGKILL never blocks its own resume. Once it holds the lock,
the run writes its host, pid and start time into the file; a second writer reads them to say
who holds the directory. Readers (dcgan-sample, -eval, -export, -report, TensorBoard) never take
the lock. The file stays in the directory after the run: removing it could let two writers lock
two different files of the same name.

Where the file system cannot lock (ENOLCK, EOPNOTSUPP, ENOSYS: NFS without a lock daemon, some
FUSE and SMB mounts), the run logs a warning and goes on without the lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Iterator, Optional

from dcgan.errors import DCGANError
from dcgan.runtime.distributed import SINGLE, Distributed, broadcast_object

try:
    import fcntl
except ImportError:  # not a POSIX system: there is no flock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
HOLDER_WAIT_S = 1.0  # how long to wait for a holder that has just locked to write its name

# the locks this process holds, by lock file: [descriptor, how many holders in this process]
_held: dict[str, list[int]] = {}


class RunDirectoryInUse(DCGANError):
    """Another process holds the run directory's lock."""


class RunLock:
    """`with RunLock(run_dir):` holds RUN_DIR/.lock, or raises RunDirectoryInUse naming the
    holder. Taking it again in the same process (the entry point, then the run) is allowed."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.key: Optional[str] = None  # set while held

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        self.release()

    def acquire(self) -> bool:
        """Take the lock (True), or go on without one where the file system has no locks
        (False, with a warning). Raises RunDirectoryInUse when another process holds it."""
        key = os.path.realpath(self.path)
        if key in _held:
            _held[key][1] += 1
            self.key = key
            return True
        if fcntl is None:
            log.warning("this system has no file locks: nothing stops a second dcgan-train "
                        "from writing into %s at the same time", self.run_dir)
            return False
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise DCGANError(f"cannot write to the run directory {self.run_dir}: "
                             f"{error.strerror or error}; choose another with "
                             "hydra.run.dir=...") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirectoryInUse(
                    f"{self.run_dir} is in use: {describe_holder(self.path)} is writing into it "
                    f"(it holds {self.path}); wait for that run to end or stop it, or train in "
                    "another directory with hydra.run.dir=...") from None
            if error.errno in UNSUPPORTED:
                log.warning("the file system of %s cannot lock files (%s): going on without "
                            "the lock, so nothing stops a second dcgan-train from writing into "
                            "it at the same time", self.run_dir, error.strerror or error)
                return False
            raise DCGANError(f"cannot lock {self.path}: {error.strerror or error}") from error
        write_holder(descriptor)
        _held[key] = [descriptor, 1]
        self.key = key
        return True

    def release(self) -> None:
        if self.key is None:
            return
        held = _held.get(self.key)
        self.key, key = None, self.key
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _held[key]
            os.close(held[0])  # closing the last descriptor of the file releases the lock


@contextmanager
def sole_writer(run_dir: Path, layout: Distributed = SINGLE) -> Iterator[None]:
    """Hold the run directory's lock for the duration, or raise RunDirectoryInUse before
    anything is read or written. Under torchrun rank 0 takes it and every rank hears whether it
    did (a collective: every rank must enter), so all refuse together."""
    lock = RunLock(run_dir)
    refusal: Optional[str] = None
    if layout.is_main:
        try:
            lock.acquire()
        except DCGANError as error:
            refusal = str(error)
    refusal = broadcast_object(refusal, layout)
    if refusal is not None:
        raise RunDirectoryInUse(refusal)
    try:
        yield
    finally:
        lock.release()


def write_holder(descriptor: int) -> None:
    """Who holds the lock, for the message a second writer shows; best effort."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, the message says less


def describe_holder(path: Path) -> str:
    """'dcgan-train pid N on HOST (since ...)' from the lock file; a holder that has just
    taken the lock may not have written it yet, so wait a moment for it."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            holder = json.loads(path.read_text())
            return (f"dcgan-train pid {holder['pid']} on {holder['host']} "
                    f"(since {holder['since']})")
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another dcgan-train (it has not written its host and pid)"
            time.sleep(0.05)


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the lock descriptors: the lock
    belongs to the parent and must go when the parent dies, not when its last child does."""
    for descriptor, _ in _held.values():
        try:
            os.close(descriptor)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
