"""What the checkpoint digest costs: sealing and checking a real training checkpoint at the
default width (ngf=ndf=64, 3 channels, Adam moments and EMA), against writing and reading it.

    python scripts/checkpoint_digest_cost.py [--repeats 5] [--ngf 64]

Times, in the same process: serialise (torch.save to memory), digest (SHA-256 over every value,
tensors read in place), write to disk with fsync (dcgan's atomic write), torch.load from disk,
and the whole save and load as dcgan does them (digest included). Prints a table and one JSON
line; the CPU is named in the first line.
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
from dcgan.store.checkpoints import load_checkpoint, save_checkpoint, serialize
from dcgan.store.integrity import seal, state_digest


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


def checkpoint_payload(ngf: int, folder: Path) -> dict:
    """The state a real run saves after one step: networks, Adam moments, EMA, hooks."""
    cfg = compose_config(["dataset=fake", "dataset.channels=3", "dataset.size=16",
                          "batch_size=16", f"model.ngf={ngf}", f"model.ndf={ngf}",
                          "ema.decay=0.999", "device=cpu"])
    trainer = build_trainer(cfg, build_dataset(cfg.dataset), folder, torch.device("cpu"))
    trainer.gan.train_step(torch.rand(16, 3, 64, 64) * 2 - 1, 0)
    return trainer.checkpoints.payload(trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ngf", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        payload = checkpoint_payload(args.ngf, folder)
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
        }
    result["digest_over_save"] = result["digest_s"] / (result["dcgan_save_s"] - result["digest_s"])
    result["digest_over_load"] = result["digest_s"] / result["torch_load_s"]
    result["digest_mb_s"] = result["checkpoint_mb"] / result["digest_s"]
    print(f"checkpoint digest cost on {result['cpu']} (torch {result['torch']}), "
          f"ngf=ndf={args.ngf}, {result['checkpoint_mb']:.1f} MB, median of {args.repeats}")
    for key in ("serialize_s", "digest_s", "write_fsync_s", "torch_load_s", "dcgan_save_s",
                "dcgan_load_s"):
        print(f"  {key:<16} {1000 * result[key]:8.1f} ms")
    print(f"  digest / rest of a save {100 * result['digest_over_save']:.0f}%, digest / torch.load "
          f"{100 * result['digest_over_load']:.0f}%, digest speed {result['digest_mb_s']:.0f} MB/s")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
