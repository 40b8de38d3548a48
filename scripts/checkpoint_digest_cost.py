"""What a checkpoint costs: sealing and checking a real training checkpoint at the default
width (ngf=ndf=64, 3 channels, Adam moments and EMA), against writing and reading it, and what
a step checkpoint costs the training loop against a plain torch.save of the same state.

    python scripts/checkpoint_digest_cost.py [--repeats 5] [--ngf 64]

Times, in the same process: serialise (torch.save to memory), digest (SHA-256 over every value,
tensors read in place), write to disk with fsync (dcgan's atomic write), torch.load from disk,
and the whole save and load as dcgan does them (digest included). Then torch.save of the state
to a file in the same folder; a step checkpoint as the checkpoint hook makes it (the time the
loop waits: a copy of the state, the write going on in the background) and until its write is
on disk; and a full save as at an epoch's end (BatchNorm statistics re-estimated for the
weights, generator.safetensors rewritten), which is what every step checkpoint cost before.
Prints a table and one JSON line; the CPU is named in the first line.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dcgan.cli.run import build_trainer
from dcgan.config import compose_config
from dcgan.data.datasets import build_dataset
from dcgan.files.atomic import write_atomic
from dcgan.store.checkpoints import (
    epoch_checkpoint_name,
    load_checkpoint,
    save_checkpoint,
    serialize,
    step_checkpoint_name,
)
from dcgan.store.integrity import seal, state_digest
from dcgan.training.loop import Trainer


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if found:
            return found.group(1).strip()
    return platform.processor() or "unknown CPU"


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def trained_one_step(ngf: int, folder: Path) -> Trainer:
    """A real run's trainer after one step: networks, Adam moments, EMA, hooks."""
    cfg = compose_config(["dataset=fake", "dataset.channels=3", "dataset.size=16",
                          "batch_size=16", f"model.ngf={ngf}", f"model.ndf={ngf}",
                          "ema.decay=0.999", "device=cpu"])
    trainer = build_trainer(cfg, build_dataset(cfg.dataset), folder, torch.device("cpu"))
    trainer.gan.train_step(torch.rand(16, 3, 64, 64) * 2 - 1, 0)
    trainer.step = 1
    return trainer


def step_checkpoint_times(trainer: Trainer, repeats: int) -> dict[str, float]:
    """A step checkpoint as the hook makes it (what the loop waits for, and until the write is
    on disk), torch.save of the same state, and a full save (epoch end)."""
    hook = trainer.checkpoints
    trainer.gan.sampling_generator  # an estimate exists, as after the first epoch
    name = step_checkpoint_name(trainer.step)
    plain = hook.folder / "plain.pt"
    hook.folder.mkdir(parents=True, exist_ok=True)

    def step_checkpoint() -> None:
        hook.finish_writes()  # time this checkpoint alone, not the end of the one before
        started = time.perf_counter()
        hook.save_step(trainer, name)
        waited.append(time.perf_counter() - started)
        hook.finish_writes()

    def full_save() -> None:
        trainer.gan.recalibrated.stale = True  # as after a step of training
        hook.save(trainer, epoch_checkpoint_name(1))

    waited: list[float] = []
    state = hook.payload(trainer)
    times = {"torch_save_file_s": timed(lambda: torch.save(state, plain), repeats),
             "step_checkpoint_write_s": timed(step_checkpoint, repeats)}
    times["step_checkpoint_s"] = statistics.median(waited)
    times["full_save_s"] = timed(full_save, repeats)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ngf", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trainer = trained_one_step(args.ngf, folder / "run")
        payload = trainer.checkpoints.payload(trainer)
        sealed = seal(payload)
        data = serialize(sealed)
        path = folder / "last.pt"
        save_checkpoint(payload, [path])
        result = {
            "cpu": cpu_name(), "torch": torch.__version__, "ngf": args.ngf,
            "checkpoint_mb": len(data) / 2**20,
            "serialize_s": timed(lambda: serialize(sealed), args.repeats),
            "digest_s": timed(lambda: state_digest(sealed), args.repeats),
            "write_fsync_s": timed(lambda: write_atomic(path, data), args.repeats),
            "torch_load_s": timed(lambda: torch.load(path, weights_only=True), args.repeats),
            "dcgan_save_s": timed(lambda: save_checkpoint(payload, [path]), args.repeats),
            "dcgan_load_s": timed(lambda: load_checkpoint(path), args.repeats),
            **step_checkpoint_times(trainer, args.repeats),
        }
    result["digest_over_save"] = result["digest_s"] / (result["dcgan_save_s"] - result["digest_s"])
    result["digest_over_load"] = result["digest_s"] / result["torch_load_s"]
    result["digest_mb_s"] = result["checkpoint_mb"] / result["digest_s"]
    plain = result["torch_save_file_s"]
    result["step_checkpoint_over_torch_save"] = result["step_checkpoint_s"] / plain
    result["step_write_over_torch_save"] = result["step_checkpoint_write_s"] / plain
    result["full_save_over_torch_save"] = result["full_save_s"] / plain
    print(f"checkpoint cost on {result['cpu']} (torch {result['torch']}), "
          f"ngf=ndf={args.ngf}, {result['checkpoint_mb']:.1f} MB, median of {args.repeats}")
    for key in ("serialize_s", "digest_s", "write_fsync_s", "torch_load_s", "dcgan_save_s",
                "dcgan_load_s", "torch_save_file_s", "step_checkpoint_s",
                "step_checkpoint_write_s", "full_save_s"):
        print(f"  {key:<24} {1000 * result[key]:8.1f} ms")
    print(f"  digest / rest of a save {100 * result['digest_over_save']:.0f}%, digest / torch.load "
          f"{100 * result['digest_over_load']:.0f}%, digest speed {result['digest_mb_s']:.0f} MB/s")
    print(f"  against torch.save of the same state to a file: a step checkpoint holds the loop "
          f"{result['step_checkpoint_over_torch_save']:.2f}x, is on disk after "
          f"{result['step_write_over_torch_save']:.2f}x; a full save (epoch end) takes "
          f"{result['full_save_over_torch_save']:.2f}x")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
