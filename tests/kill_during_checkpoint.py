"""Harness for test_reliability: SIGKILL a real training process at random moments while it
writes checkpoints, and load last.pt after every kill.

Usage: python tests/kill_during_checkpoint.py RUN_DIR KILLS SEED
Prints one JSON line: {"kills": N, "mid_write": M, "steps": [...]}.

dcgan, and what its training imports on first use, is imported once here; each training
process is a fork of this one running the real `dcgan-train` entry point, so the 20 kills cost
seconds, not 20 interpreter start-ups. This process runs no torch computation before forking
(only imports and loads), so forking is safe.
"""

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch
import torch._dynamo  # torch.optim's first step imports it: ~2 s in every child otherwise

import dcgan.cli.run  # what dcgan-train imports once a config is composed
import dcgan.cli.train
from dcgan.store.checkpoints import REQUIRED_KEYS, load_generator_file

TRAIN_ARGS = ["dataset=fake", "dataset.size=100000", "model.ngf=32", "model.ndf=32",
              "model.nz=32", "batch_size=4", "ckpt_every_steps=1", "keep_last=2", "epochs=1",
              "ema.recalibrate_bn=false",  # the save is the write alone, where the kills must land
              "log_every=1000", "device=cpu", "resume=auto"]


def train_in_child(run_dir: Path) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    torch.set_num_threads(1)
    sys.argv = ["dcgan-train", *TRAIN_ARGS, f"hydra.run.dir={run_dir}"]
    try:
        dcgan.cli.train.main()
    finally:
        os._exit(0)


def wait_for_a_write(checkpoints: Path, since: float, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    last = checkpoints / "last.pt"
    while time.time() < deadline:
        if last.exists() and last.stat().st_mtime > since:
            return
        time.sleep(0.01)
    raise SystemExit("the training process wrote no checkpoint within a minute")


def wait_for_a_temporary(checkpoints: Path, timeout: float = 10.0) -> None:
    """Return as soon as a checkpoint is being written (its temporary file exists)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not any(checkpoints.glob(".*.tmp-*")):
        time.sleep(0.001)


def main() -> None:
    run_dir, kills, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    checkpoints = run_dir / "checkpoints"
    rng = random.Random(seed)
    mid_write, steps = 0, []
    for _ in range(kills):
        started = time.time()
        pid = os.fork()
        if pid == 0:
            train_in_child(run_dir)
        wait_for_a_write(checkpoints, since=started)
        if rng.random() < 0.5:  # aim inside a write: at a random point of writing the file
            wait_for_a_temporary(checkpoints)
            time.sleep(rng.uniform(0.0, 0.004))
        else:  # anywhere: training, writing, pruning
            time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        mid_write += any(checkpoints.glob(".*.tmp-*"))  # killed inside write_atomic
        state = torch.load(checkpoints / "last.pt", map_location="cpu", weights_only=True)
        missing = [key for key in REQUIRED_KEYS if key not in state]
        assert not missing, f"last.pt lacks {missing}"
        if (checkpoints / "generator.safetensors").exists():  # written at epoch ends only
            load_generator_file(checkpoints / "generator.safetensors")
        steps.append(int(state["step"]))
    print(json.dumps({"kills": kills, "mid_write": mid_write, "steps": steps}))


if __name__ == "__main__":
    main()
