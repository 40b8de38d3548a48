"""The fusion study: does fusing the work around the convolutions speed up the CPU fp32 step?

What is left of the CPU fp32 training step besides its convolutions, and whether fusing the
memory-bound work around the convolutions recovers any of it.

    python studies/fusion/fusion_experiments.py [--windows 7] [--steps 3]

1. Where a training step's time goes: torch.profiler's self CPU time for a few steps of the
   project's trainer (fp32, batch 128, ngf=ndf=64), grouped into convolutions, BatchNorm,
   activations, the optimiser and the rest.
2. Paired timings (alternating windows, medians of the per-window ratios to the unchanged
   trainer, all in the same run) of:
   - bn_act_inductor: every BatchNorm + ReLU/LeakyReLU pair compiled by inductor alone (one
     generated kernel for the statistics, normalisation and activation, and one for their
     backward), the convolutions left to oneDNN;
   - compile: the whole networks through torch.compile (the trainer's `compile=true`).
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

# the benchmark's trainer and timer, from the repository's scripts/ (studies/fusion -> ../../scripts)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from benchmark import cpu_name, project_trainer, timed  # noqa: E402

BATCH = 128

CATEGORIES = {  # substrings of aten op names -> the group they count in
    "convolution": ("convolution", "conv2d", "conv_transpose", "mkldnn_conv", "_conv_depthwise"),
    "batchnorm": ("batch_norm",),
    "activation": ("relu", "leaky_relu", "threshold_backward", "tanh"),
    "optimiser": ("adam", "_foreach", "fused_"),
    "loss": ("binary_cross_entropy",),
}


def category(op: str) -> str:
    for name, keys in CATEGORIES.items():
        if any(key in op for key in keys):
            return name
    return "other"


def profile_step(steps: int) -> dict[str, float]:
    """Share of the step's CPU time per group of ops, by self time (each op without the ops
    it calls, so nothing is counted twice)."""
    trainer = project_trainer(torch.device("cpu"), BATCH, "precision=fp32")
    real = torch.rand(BATCH, 3, 64, 64).mul_(2).sub_(1)
    for _ in range(2):
        trainer.train_step(real, 0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(real, 0)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[category(event.key)] += event.self_cpu_time_total
    whole = sum(totals.values())
    return {name: totals[name] / whole for name in sorted(totals, key=totals.get, reverse=True)}


def compile_bn_act_pairs(network: nn.Module) -> int:
    """Replace each BatchNorm2d followed by ReLU/LeakyReLU in `network.main` by the pair
    compiled as one module (same parameter and buffer objects); how many pairs."""
    layers = list(network.main)
    fused, index, pairs = [], 0, 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, nn.BatchNorm2d) and isinstance(following, (nn.ReLU, nn.LeakyReLU)):
            activation = (nn.ReLU() if isinstance(following, nn.ReLU)
                          else nn.LeakyReLU(following.negative_slope))  # not in place: fused
            fused.append(torch.compile(nn.Sequential(layer, activation), dynamic=False))
            index, pairs = index + 2, pairs + 1
        else:
            fused.append(layer)
            index += 1
    network.main = nn.Sequential(*fused)
    return pairs


def variants() -> dict[str, object]:
    # the seven pairs share Sequential.forward's code object, and dynamo compiles at most 8
    # graphs per code object by default (the rest would silently run eager)
    torch._dynamo.config.recompile_limit = 64
    cpu = torch.device("cpu")
    base = project_trainer(cpu, BATCH, "precision=fp32")
    paired = project_trainer(cpu, BATCH, "precision=fp32")
    assert compile_bn_act_pairs(paired.generator) == 4  # at 64x64
    assert compile_bn_act_pairs(paired.discriminator) == 3
    whole = project_trainer(cpu, BATCH, "precision=fp32", "compile=true")
    return {"trainer": base, "bn_act_inductor": paired, "compile": whole}


def measure(windows: int, steps: int) -> dict:
    trainers = variants()
    real = torch.rand(BATCH, 3, 64, 64).mul_(2).sub_(1)
    calls = {name: (lambda t=t: t.train_step(real, 0)) for name, t in trainers.items()}
    started = time.perf_counter()
    for fn in calls.values():  # warm-up, and inductor's compilation
        timed(fn, 3, torch.device("cpu"))
    warmup_s = time.perf_counter() - started
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(windows):
        for name, fn in calls.items():
            rates[name].append(BATCH * steps / timed(fn, steps, torch.device("cpu")))
    base = rates["trainer"]
    return {"img_s": {n: round(statistics.median(r), 2) for n, r in rates.items()},
            "ratio": {n: round(statistics.median(x / y for x, y in zip(r, base)), 3)
                      for n, r in rates.items() if n != "trainer"},
            "ratio_windows": {n: [round(x / y, 3) for x, y in zip(r, base)]
                              for n, r in rates.items() if n != "trainer"},
            "warmup_and_compile_s": round(warmup_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    shares = profile_step(steps=4)
    result = measure(args.windows, args.steps)
    print(f"fusion experiments on cpu ({cpu_name()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}), batch {BATCH}, 64x64x3, ngf=ndf=64, fp32")
    print("  where a step's time goes (self CPU time, torch.profiler):")
    for name, share in shares.items():
        print(f"    {name:<58}{share:>8.1%}")
    print(f"  {'trainer as it is':<60}{result['img_s']['trainer']:>8.1f} img/s")
    for name, ratio in result["ratio"].items():
        print(f"  {name:<60}{result['img_s'][name]:>8.1f} img/s  {ratio:.3f}x")
    print(json.dumps({"cpu": cpu_name(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "shares": {k: round(v, 4) for k, v in
                                                             shares.items()}, **result}))


if __name__ == "__main__":
    main()
