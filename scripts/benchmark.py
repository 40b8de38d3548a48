"""Training throughput of dcgan's trainer against the textbook DCGAN loop, in the same run.

    python scripts/benchmark.py            # a few minutes
    python scripts/benchmark.py --quick    # under a minute
    python scripts/benchmark.py --contention  # on a busy CPU (scripts/benchmark_contention.py)

Measures, at the default architecture (64x64, ngf=ndf=64, 3 channels, batch 128):
  - training: real images per second of dcgan's GANPair.train_step and of a reference loop
    written here the way the textbook examples write it (D ends in Sigmoid, BCELoss, NCHW,
    D's weights keep requiring grad during the G step, .item() every step, default Adam).
    Timed windows of the two alternate so drift on a shared machine hits both; the ratio is
    the median of the paired window ratios.
  - float32 and, on CPUs that compute bf16 natively (AMX or AVX512-BF16; --bf16 forces it), bf16
    autocast, each beside the textbook loop in the same alternating windows.
  - the ceiling of each precision: every convolution of the step (forward, input gradient,
    weight gradient) timed alone at its own shape, layout and precision, summed as often as a
    step runs it; the step's time as a fraction of that (FLOPs counted from the architecture).
  - the data path: CelebA JPEG decode + crop + resize through the project's DataLoader (default
    workers) versus the decoded-image cache (dcgan-prepare).
  - sampling: images per second of dcgan-sample's generator.
  - on CUDA, the trainer with one non-default setting each: precision=fp32, precision=fp16,
    channels_last=false and compile=true (default there: bf16 autocast).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import nn

from dcgan.cli.sample import generate
from dcgan.config import compose_config as compose_overrides
from dcgan.config import gan_settings
from dcgan.data.datasets import build_dataset
from dcgan.data.loader import DeviceFeed, EpochShuffle, build_loader, decoded_images
from dcgan.nets.models import Architecture, Discriminator, Generator
from dcgan.runtime.process import (
    configure_backends,
    cpu_has_native_bf16,
    resolve_device,
    seed_everything,
)
from dcgan.training.loop import finite_check_every
from dcgan.training.pair import GANPair

REPO = Path(__file__).resolve().parents[1]
SHARED_CELEBA = Path(os.environ.get("DCGAN_SHARED_DATA", REPO.parent / "shared" / "data")) / "celeba"


# -- the textbook loop (pytorch/examples dcgan, the DCGAN tutorial) ----------------------------

def reference_networks(nz: int, ngf: int, ndf: int, nc: int) -> tuple[nn.Module, nn.Module]:
    generator = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    return generator, discriminator


class ReferenceLoop:
    def __init__(self, device: torch.device, nz=100, ngf=64, ndf=64, nc=3):
        self.device, self.nz = device, nz
        self.net_g, self.net_d = (m.to(device) for m in reference_networks(nz, ngf, ndf, nc))
        self.criterion = nn.BCELoss()
        self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(self, real: torch.Tensor) -> None:
        real = real.to(self.device)
        b = real.size(0)
        self.net_d.zero_grad()
        label = torch.full((b,), 1.0, device=self.device)
        output = self.net_d(real).view(-1)
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        output.mean().item()
        noise = torch.randn(b, self.nz, 1, 1, device=self.device)
        fake = self.net_g(noise)
        label.fill_(0.0)
        output = self.net_d(fake.detach()).view(-1)
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        output.mean().item()
        err_d = err_d_real + err_d_fake
        self.opt_d.step()
        self.net_g.zero_grad()
        label.fill_(1.0)
        output = self.net_d(fake).view(-1)
        err_g = self.criterion(output, label)
        err_g.backward()
        output.mean().item()
        self.opt_g.step()
        err_d.item(), err_g.item()


# -- helpers -----------------------------------------------------------------------------------

def compose_config(*overrides: str):
    return compose_overrides(overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return time.perf_counter() - started


def conv_macs(arch: Architecture) -> tuple[list[int], list[int]]:
    """Forward multiply-accumulates per image of each layer of G and of D."""
    size, width = 4, arch.ngf * 2**arch.middle_blocks
    g = [arch.nz * width * 16]  # 1x1 -> 4x4
    while width > arch.ngf:
        g.append(width * (width // 2) * 16 * size * size)  # per input pixel, 4x4 kernel
        width, size = width // 2, size * 2
    g.append(width * arch.channels * 16 * size * size)
    d, size, width = [], arch.image_size // 2, arch.ndf
    d.append(arch.channels * width * 16 * size * size)
    while size > 4:
        size //= 2
        d.append(width * width * 2 * 16 * size * size)
        width *= 2
    d.append(width * 16)  # 4x4 -> 1x1
    return g, d


def training_flops_per_image(arch: Architecture) -> float:
    """FLOPs of one D step + one G step, per image, counted layer by layer."""
    g, d = conv_macs(arch)
    d_step = 2 * sum(d) + 2 * (sum(d) + sum(d[1:]))  # 2 forwards; weight + input grads (not x)
    g_step = sum(d) + sum(d) + sum(g) + (sum(g) + sum(g[1:]))  # D fwd, D input grads, G fwd, G bwd
    return 2.0 * (d_step + g_step)


def conv_layers(arch: Architecture, batch: int) -> list[tuple[str, nn.Module, tuple, tuple]]:
    """Every convolution of one training step: (name, layer, input shape, (forward, input-grad,
    weight-grad passes per step)) at this batch size. The counts are training_flops_per_image's:
    D runs forward three times (real and fake in its own step, fake in G's step), with weight
    gradients in its own step only and input gradients wherever a gradient flows to its input
    (its first layer: in G's step only); G runs forward once and backward once, with no input
    gradient at its first layer (the noise)."""
    shapes: dict[nn.Module, tuple] = {}

    def record(module: nn.Module, inputs: tuple) -> None:
        shapes.setdefault(module, tuple(inputs[0].shape))

    generator, discriminator = Generator(arch), Discriminator(arch)
    handles = [m.register_forward_pre_hook(record)
               for net in (generator, discriminator) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        discriminator(generator(torch.randn(batch, arch.nz, 1, 1)))
    for handle in handles:
        handle.remove()
    layers, g_index, d_index = [], 0, 0
    for layer, shape in shapes.items():
        if isinstance(layer, nn.ConvTranspose2d):
            layers.append((f"G{g_index}", layer, shape, (1, 0 if g_index == 0 else 1, 1)))
            g_index += 1
        else:
            layers.append((f"D{d_index}", layer, shape, (3, 1 if d_index == 0 else 3, 2)))
            d_index += 1
    return layers


def best_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (and oneDNN's primitive cache)
    return min(timed(fn, 1, device) for _ in range(repeats))


def step_ceiling(arch: Architecture, batch: int, device: torch.device,
                 dtype: Optional[torch.dtype], repeats: int) -> dict:
    """The least time the step's convolutions can take on this machine: each layer's forward,
    input-gradient and weight-gradient pass timed alone (best of `repeats`) at its own shape, in
    the layout (channels_last) and precision (autocast to `dtype`, None: float32) the trainer
    uses, times how often one step runs it. Returns that time and the FLOP/s it implies."""
    seconds = 0.0
    for _, template, shape, (forwards, input_grads, weight_grads) in conv_layers(arch, batch):
        layer = template.to(device, memory_format=torch.channels_last)
        x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)

        def autocast():
            return (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())

        def forward_only() -> None:
            with torch.no_grad(), autocast():
                layer(x)

        def with_input_grad() -> None:  # forward + the input gradient alone
            layer.weight.requires_grad_(False)
            with autocast():
                out = layer(x.detach().requires_grad_(True))
            out.backward(torch.ones_like(out))

        def with_weight_grad() -> None:  # forward + the weight gradient alone
            layer.weight.requires_grad_(True)
            layer.weight.grad = None
            with autocast():
                out = layer(x)
            out.backward(torch.ones_like(out))

        t_forward = best_seconds(forward_only, repeats, device)
        t_input = max(best_seconds(with_input_grad, repeats, device) - t_forward, 0.0)
        t_weight = max(best_seconds(with_weight_grad, repeats, device) - t_forward, 0.0)
        seconds += forwards * t_forward + input_grads * t_input + weight_grads * t_weight
    flops = training_flops_per_image(arch) * batch
    return {"seconds": seconds, "gflop_s": flops / seconds / 1e9}


def synthetic_celeba(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (folder / "img_align_celeba").mkdir(parents=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / f"{index:06d}.jpg", quality=90)
    return folder


def images_per_second(feed, sampler=None) -> float:
    """Images per second a feed (a DataLoader or the device feed) yields over one epoch, each
    batch complete on its device before the next is asked for."""
    if sampler is not None:
        sampler.set_epoch(0)
    started, count = time.perf_counter(), 0
    for images, _ in feed:
        count += images.shape[0]
    sync(images.device)
    return count / (time.perf_counter() - started)


# -- the measurements --------------------------------------------------------------------------

def project_trainer(device, batch, *overrides) -> GANPair:
    """The project's GAN pair with the training defaults (it needs no data set or run dir)."""
    cfg = compose_config("dataset=fake", "dataset.channels=3", f"batch_size={batch}",
                         f"device={device.type}", *overrides)
    seed_everything(0)
    return GANPair(gan_settings(cfg, steps_per_epoch=1), device)


def precisions_for(device: torch.device, force_bf16: bool) -> list[str]:
    """The precisions the trainer is timed at beside the textbook loop: on a CPU float32, and
    bf16 where the CPU computes it natively (or when asked); on CUDA the default, bf16."""
    if device.type == "cuda":
        return ["bf16"]
    return ["fp32", "bf16"] if force_bf16 or cpu_has_native_bf16() else ["fp32"]


def variants_for(device: torch.device) -> list[str]:
    """The other settings worth a row on this device (CUDA: fp32, fp16, layout, compile)."""
    if device.type == "cuda":
        return ["precision=fp32", "precision=fp16", "channels_last=false", "compile=true"]
    return []


def paired_variants_for(device: torch.device) -> dict[str, list[str]]:
    """Settings timed in the paired windows beside the textbook loop (a ratio each)."""
    if device.type == "cuda":
        return {"cuda_graphs=true": ["precision=bf16", "cuda_graphs=true"],
                "cuda_graphs=true, precision=fp32": ["precision=fp32", "cuda_graphs=true"]}
    return {}


def loop_step(trainer: GANPair, real: torch.Tensor):
    """One call = one training step as the loop makes it, the losses read on the host as
    often as the loop reads them (at the default log_every, 50)."""
    check_every = finite_check_every(trainer.device, log_every=50)
    count = itertools.count(1)
    return lambda: trainer.train_step(real, 0, check_finite=next(count) % check_every == 0)


def measure_variant(device, batch, windows, steps, warmup, override: str) -> float:
    """The project's trainer with one setting changed from its default."""
    trainer = project_trainer(device, batch, override)
    real = torch.rand(batch, 3, 64, 64).mul_(2).sub_(1)
    step = loop_step(trainer, real)
    timed(step, warmup, device)
    return statistics.median(batch * steps / timed(step, steps, device) for _ in range(windows))


def measure_training(device, batch, windows, steps, warmup, precisions: list[str]) -> dict:
    """The textbook loop and the trainer at each precision, in alternating timed windows; the
    ratios are medians of the paired windows."""
    trainers = {p: project_trainer(device, batch, f"precision={p}") for p in precisions}
    trainers.update({name: project_trainer(device, batch, *overrides)
                     for name, overrides in paired_variants_for(device).items()})
    reference = ReferenceLoop(device)
    real = torch.rand(batch, 3, 64, 64).mul_(2).sub_(1)
    if device.type == "cuda":
        real = real.pin_memory()
    steps_of = {"reference": lambda: reference.step(real),
                **{p: loop_step(t, real) for p, t in trainers.items()}}
    for fn in steps_of.values():
        timed(fn, warmup, device)
    rates: dict[str, list[float]] = {name: [] for name in steps_of}
    for _ in range(windows):
        for name, fn in steps_of.items():
            rates[name].append(batch * steps / timed(fn, steps, device))
    ref = rates.pop("reference")
    return {"reference_img_s": statistics.median(ref),
            "img_s": {p: statistics.median(r) for p, r in rates.items()},
            "ratio": {p: statistics.median(x / y for x, y in zip(r, ref))
                      for p, r in rates.items()},
            "ratio_windows": {p: [round(x / y, 3) for x, y in zip(r, ref)]
                              for p, r in rates.items()},
            "arch": next(iter(trainers.values())).settings.arch}


def measure_data(count: int, training_img_s: float, device: torch.device) -> dict:
    """The data path at batch 128: JPEG decoding through the DataLoader (default workers),
    the decoded-image cache through the DataLoader, and the cache on the device (the device
    feed, data_on_device=true)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = SHARED_CELEBA if SHARED_CELEBA.is_dir() else synthetic_celeba(Path(tmp) / "celeba", count)
        overrides = ["dataset=celeba", f"dataset.root={root}", f"dataset.limit={count}",
                     f"dataset.cache_dir={tmp}/cache"]
        jpeg = images_per_second(build_loader(build_dataset(compose_config(*overrides).dataset),
                                              128, 0, None)[0])
        started = time.perf_counter()
        cached = build_dataset(compose_config(*overrides, "dataset.cache=true").dataset)
        prepare_s = time.perf_counter() - started
        loader, sampler = build_loader(cached, 128, 0, None, pin_memory=device.type == "cuda")
        cache = images_per_second(loader, sampler)
        feed = DeviceFeed(decoded_images(cached), 128, EpochShuffle(len(cached), 0), device)
        images_per_second(feed, feed.sampler)  # warm-up (the first gather, the copy is done)
        on_device = images_per_second(feed, feed.sampler)
    return {"data_source": "shared CelebA" if root == SHARED_CELEBA else "synthetic JPEGs",
            "data_images": count, "data_jpeg_img_s": jpeg, "data_cache_img_s": cache,
            "data_device_img_s": on_device, "cache_build_s": prepare_s,
            "cache_over_training": cache / training_img_s,
            "device_over_training": on_device / training_img_s}


def measure_sampling(device, arch: Architecture, n: int) -> float:
    generator = Generator(arch).to(device).eval()
    generate(generator, 256, 0, device)  # warm-up
    sync(device)
    started = time.perf_counter()
    generate(generator, n, 1, device)
    sync(device)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows: under a minute")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--bf16", action="store_true",
                        help="time bf16 on a CPU even without native bf16 (slow there)")
    parser.add_argument("--contention", action="store_true",
                        help="only the trainer beside busy processes, as ratios to it alone")
    parser.add_argument("--repeats", type=int, default=3, help="--contention: rounds to take "
                        "the median of")
    args = parser.parse_args()
    if args.contention:
        from benchmark_contention import measure, report

        report(measure(args.repeats), cpu_name())
        return
    device = resolve_device(args.device)
    configure_backends(device, None)  # cudnn.benchmark on CUDA, as in the textbook example too
    windows, steps, warmup = (3, 1, 1) if args.quick else (7, 3, 2)
    if device.type == "cuda":  # a step takes milliseconds: longer windows, and compile's warm-up
        steps, warmup = steps * 20, warmup * 10
    torch.manual_seed(0)

    precisions = precisions_for(device, args.bf16)
    train = measure_training(device, args.batch_size, windows, steps, warmup, precisions)
    arch = train.pop("arch")
    flops = training_flops_per_image(arch)
    variants = {override: measure_variant(device, args.batch_size, windows, steps, warmup, override)
                for override in variants_for(device)}
    ceilings = {p: step_ceiling(arch, args.batch_size, device,
                                None if p == "fp32" else torch.bfloat16, 2 if args.quick else 5)
                for p in precisions}
    fractions = {p: ceilings[p]["seconds"] / (args.batch_size / train["img_s"][p])
                 for p in precisions}
    data = measure_data(256 if args.quick else 2048, max(train["img_s"].values()), device)
    sampling = measure_sampling(device, arch, 512 if args.quick else 2048)

    result = {
        "device": str(device), "cpu": cpu_name(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
        "batch_size": args.batch_size, "quick": args.quick, **train,
        "variants_img_s": variants, "train_gflop_per_img": flops / 1e9,
        "ceiling_gflop_s": {p: c["gflop_s"] for p, c in ceilings.items()},
        "project_gflop_s": {p: v * flops / 1e9 for p, v in train["img_s"].items()},
        "fraction_of_ceiling": fractions, **data, "sample_img_s": sampling,
    }
    rows = [("training, textbook reference loop", f"{result['reference_img_s']:.1f} img/s")]
    for p in precisions:
        rows += [
            (f"training, dcgan trainer, precision={p}", f"{train['img_s'][p]:.1f} img/s"),
            ("  ratio to the reference (median of paired windows)", f"{train['ratio'][p]:.2f}x"),
            (f"  step's own convolutions, each alone at its best ({p})",
             f"{ceilings[p]['gflop_s']:.0f} GFLOP/s"),
            ("  dcgan step / that ceiling", f"{100 * fractions[p]:.0f}%"),
        ]
    for name in paired_variants_for(device):
        rows += [(f"training, dcgan trainer, {name}", f"{train['img_s'][name]:.1f} img/s"),
                 ("  ratio to the reference (median of paired windows)",
                  f"{train['ratio'][name]:.2f}x")]
    rows += [
        *((f"training, dcgan trainer with {override}", f"{value:.1f} img/s")
          for override, value in variants.items()),
        ("training FLOPs per image (from the architecture)", f"{result['train_gflop_per_img']:.2f} GFLOP"),
        (f"data: JPEG decode ({data['data_source']}, default workers)", f"{result['data_jpeg_img_s']:.0f} img/s"),
        ("data: decoded-image cache, DataLoader", f"{result['data_cache_img_s']:.0f} img/s"),
        (f"data: decoded-image cache on {device} (data_on_device)",
         f"{result['data_device_img_s']:.0f} img/s"),
        ("data: cache (DataLoader) / training consumption", f"{result['cache_over_training']:.0f}x"),
        ("data: cache on the device / training consumption", f"{result['device_over_training']:.0f}x"),
        ("sampling (dcgan-sample generator)", f"{result['sample_img_s']:.0f} img/s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"dcgan benchmark on {device} ({result['cpu']}, {torch.get_num_threads()} threads, "
          f"native bf16: {result['native_bf16']}, torch {torch.__version__}), "
          f"batch {args.batch_size}, 64x64x3, ngf=ndf=64")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}")
    print(json.dumps(rounded(result)))
    sys.stdout.flush()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
