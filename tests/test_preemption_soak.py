"""A preemption soak: the same `dcgan-train ... resume=auto` command, on real image files, is
interrupted again and again at random moments (SIGTERM and SIGKILL, some while a checkpoint is
being written, some while an epoch is being evaluated) and relaunched until it finishes.

After every interruption every checkpoint in the run loads and matches its digest; at the end
the TensorBoard curves hold each step exactly once (what a SIGKILL lost was trained again and
the stale events were purged), and the final weights are bit-identical to an uninterrupted run
of the same command (resume restores the RNG and the data order exactly).
"""

from __future__ import annotations

import hashlib
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dcgan.store.checkpoints import load_checkpoint, load_generator_file
from dcgan.store.integrity import tensor_bytes
from tests.commands import CommandProcess, run_cli, start_cli

pytestmark = pytest.mark.slow

EPOCHS, IMAGES, BATCH = 8, 96, 16  # 6 steps an epoch, 48 in all: room for 8 interruptions
STEPS = EPOCHS * IMAGES // BATCH


def make_images(folder: Path) -> Path:
    """IMAGES small PNG files with some structure (gradients and blobs), on disk."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48] / 47.0
    for index in range(IMAGES):
        cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.3)]
        blob = ((y - cy) ** 2 + (x - cx) ** 2 < r ** 2)[..., None]
        base = np.stack([x, y, 1 - x], axis=-1) * rng.uniform(0.3, 1.0, 3)
        pixels = np.where(blob, rng.uniform(0, 1, 3), base) * 255
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.png")
    return folder


def command(images: Path, run_dir: Path) -> list[str]:
    return ["dataset=folder", f"dataset.root={images}", "dataset.image_size=32",
            "dataset.limit=null", "num_workers=0", "model.ngf=16", "model.ndf=16", "model.nz=16",
            f"batch_size={BATCH}", f"epochs={EPOCHS}", "log_every=1", "ckpt_every_steps=2",
            "keep_last=2", "eval.n_samples=96", "device=cpu", "cpu_threads=1", "resume=auto",
            "report=false",
            f"hydra.run.dir={run_dir}"]


def weights_digest(run_dir: Path) -> str:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    digest = hashlib.sha256()
    for network in ("generator", "discriminator"):
        for name, tensor in sorted(state[network].items()):
            digest.update(name.encode())
            digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def every_checkpoint_loads(run_dir: Path) -> int:
    """Load (and so verify) every finished checkpoint file; how many there were."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return 0
    files = [path for path in folder.glob("*.pt") if not path.name.startswith(".")]
    for path in files:
        load_checkpoint(path)  # raises on a torn or corrupted file
    if (folder / "generator.safetensors").exists():
        load_generator_file(folder / "generator.safetensors")
    return len(files)


def wait_for(condition, process: CommandProcess, timeout: float = 60) -> bool:
    """Poll until `condition()` or the process ends; True if the condition came first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def trigger(kind: str, run_dir: Path, rng: random.Random):
    """A condition that becomes true at the moment to interrupt."""
    folder = run_dir / "checkpoints"
    if kind == "write":  # a checkpoint is being written
        return lambda: folder.is_dir() and any(folder.glob(".*.tmp-*"))
    if kind == "eval":  # the epoch's grid was saved: its evaluation runs now
        seen = set((run_dir / "samples").glob("epoch_*.png")) if (run_dir / "samples").is_dir() else set()
        return lambda: (run_dir / "samples").is_dir() and bool(
            set((run_dir / "samples").glob("epoch_*.png")) - seen)
    seen_steps = set(folder.glob("step_*.pt")) if folder.is_dir() else set()
    delay = rng.uniform(0.0, 0.3)
    started: list[float] = []

    def after_a_new_step_checkpoint() -> bool:
        if not started and folder.is_dir() and set(folder.glob("step_*.pt")) - seen_steps:
            started.append(time.time())
        return bool(started) and time.time() - started[0] >= delay

    return after_a_new_step_checkpoint


def soak(images: Path, run_dir: Path, interruptions: list[tuple[str, signal.Signals]],
         rng: random.Random) -> list[str]:
    """Interrupt the command as listed, then let it finish; what happened each time."""
    log = []
    for kind, signum in interruptions:
        process = start_cli("dcgan-train", *command(images, run_dir))
        hit = wait_for(trigger(kind, run_dir, rng), process)
        if process.poll() is None:
            process.send_signal(signum)
        code = process.wait(timeout=120)
        files = every_checkpoint_loads(run_dir)
        log.append(f"{kind} {signum.name} hit={hit} exit={code} checkpoints={files}")
        assert code in (0, -9, -15, 128 + signal.SIGTERM), log[-1]
    run_cli("dcgan-train", *command(images, run_dir), check=True)
    every_checkpoint_loads(run_dir)
    return log


def logged_steps(run_dir: Path) -> list[int]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars("loss/d")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak")
    images = make_images(root / "images")
    straight = root / "straight"
    run_cli("dcgan-train", *command(images, straight), check=True)
    return root, images, weights_digest(straight)


def test_sigterm_and_sigkill_at_random_moments_lose_nothing(setup):
    root, images, expected = setup
    rng = random.Random(11)
    kinds = ["write", "eval", "step"] * 2 + ["write", "step"]  # 8 interruptions
    rng.shuffle(kinds)
    plan = [(kind, rng.choice([signal.SIGTERM, signal.SIGKILL])) for kind in kinds]
    plan[0], plan[1] = ("write", signal.SIGKILL), ("eval", signal.SIGTERM)  # both signals
    run_dir = root / "mixed"
    log = soak(images, run_dir, plan, rng)
    assert sum("hit=True" in line for line in log) >= 7, log  # interrupted mid-run each time
    assert any(line.startswith("write SIGKILL hit=True") for line in log), log  # torn writes
    assert any(line.startswith("eval ") and "hit=True" in line for line in log), log
    assert any("exit=-9" in line for line in log) and any("exit=143" in line for line in log)
    assert logged_steps(run_dir) == list(range(1, STEPS + 1)), log  # no gap, no duplicate
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (EPOCHS, STEPS)
    assert weights_digest(run_dir) == expected, log
