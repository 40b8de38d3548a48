"""One writer per run directory: dcgan-train holds RUN_DIR/.lock for the whole run. A second
dcgan-train on a held directory refuses in one line (exit 2) naming the holder, before it
writes anything; a SIGKILLed run leaves no lock behind; readers never need the lock."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcgan.store import run_lock
from dcgan.store.run_lock import LOCK_FILE, RunLock
from tests.conftest import TINY, run_cli, start_cli, user_error_line

TRY_LOCK = ("import sys\nfrom dcgan.store.run_lock import RunLock\n"
            "print(RunLock(sys.argv[1]).acquire())")


def lock_from_another_process(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(run_dir)], capture_output=True,
                          text=True, timeout=60)


def test_the_lock_is_one_process_s_and_can_be_taken_again_inside_it(tmp_path):
    with RunLock(tmp_path):
        with RunLock(tmp_path):  # the entry point took it, then the run takes it again
            pass
        refused = lock_from_another_process(tmp_path)  # still held after the inner release
        assert refused.returncode == 1 and "RunDirectoryInUse" in refused.stderr
        assert f"pid {os.getpid()} on {socket.gethostname()}" in refused.stderr
    assert lock_from_another_process(tmp_path).stdout.strip() == "True"  # released


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A DataLoader worker outliving a killed run must not block its resume."""
    lock = RunLock(tmp_path)
    lock.acquire()
    child = os.fork()
    if child == 0:  # holds a copy of every descriptor of the parent, the lock's closed
        time.sleep(30)
        os._exit(0)
    try:
        lock.release()
        assert lock_from_another_process(tmp_path).stdout.strip() == "True"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_where_files_cannot_be_locked_the_run_goes_on_with_a_warning(tmp_path, monkeypatch,
                                                                     caplog):
    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING):
        assert RunLock(tmp_path).acquire() is False
    assert "cannot lock files (No locks available)" in caplog.text


# -- the real commands ------------------------------------------------------------------------

# 20 steps in the epoch, a step checkpoint every 2, a DataLoader worker (a forked child)
RUN = [arg for arg in TINY if not arg.startswith(("dataset.limit", "batch_size"))] + [
    "dataset=fake", "dataset.size=160", "batch_size=8", "epochs=1", "ckpt_every_steps=2",
    "num_workers=1", "resume=auto"]


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A run SIGKILLed after its first checkpoint, then the same command again."""
    run_dir = tmp_path_factory.mktemp("locked") / "run"
    process = start_cli("dcgan-train", *RUN, f"hydra.run.dir={run_dir}")
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert str(process.pid) in (run_dir / LOCK_FILE).read_text()  # the file stays, unlocked
    return run_dir, run_cli("dcgan-train", *RUN, f"hydra.run.dir={run_dir}", timeout=600)


@pytest.mark.slow
def test_a_sigkilled_run_resumes_without_a_stale_lock(killed_then_resumed):
    run_dir, resumed = killed_then_resumed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 20)


@pytest.mark.slow
def test_a_second_writer_is_refused_before_it_writes_anything(killed_then_resumed):
    run_dir, _ = killed_then_resumed
    with RunLock(run_dir):  # as a running dcgan-train holds it
        before = files_of(run_dir)
        line = user_error_line(run_cli("dcgan-train", *RUN, "epochs=2",
                                       f"hydra.run.dir={run_dir}"))
        assert files_of(run_dir) == before  # no event file, config or checkpoint written
    assert f"{run_dir} is in use" in line
    assert f"pid {os.getpid()} on {socket.gethostname()}" in line


def files_of(run_dir: Path) -> dict[Path, int]:
    """The run's files and when each was last written (but Hydra's own record and log, which
    Hydra writes before dcgan-train starts)."""
    return {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")
            if path.is_file() and ".hydra" not in path.parts and path.name != "train.log"}


@pytest.mark.slow
def test_readers_need_no_lock(killed_then_resumed, tmp_path):
    run_dir, _ = killed_then_resumed
    with RunLock(run_dir):
        run_cli("dcgan-sample", "--ckpt", str(run_dir), "--n", "4", "--out",
                str(tmp_path / "samples.png"), check=True)
        run_cli("dcgan-report", str(run_dir), check=True)
    assert (tmp_path / "samples.png").is_file()
