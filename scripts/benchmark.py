"""Training throughput of dcgan's trainer against the textbook DCGAN loop, in the same run.

    python scripts/benchmark.py            # a few minutes
    python scripts/benchmark.py --quick    # under a minute

Measures, at the default architecture (64x64, ngf=ndf=64, 3 channels, batch 128):
  - training: real images per second of dcgan's GANPair.train_step and of a reference loop
    written here the way the textbook examples write it (D ends in Sigmoid, BCELoss, NCHW,
    D's weights keep requiring grad during the G step, .item() every step, default Adam).
    Timed windows of the two alternate so drift on a shared machine hits both; the ratio is
    the median of the paired window ratios.
  - the machine's ceiling: one large convolution forward+backward (channels_last) in FLOP/s,
    and the project's step as a fraction of it (training FLOPs counted from the architecture).
  - the data path: CelebA JPEG decode + crop + resize through the project's DataLoader (default
    workers) versus the decoded-image cache (dcgan-prepare).
  - sampling: images per second of dcgan-sample's generator.
  - the trainer with one non-default setting each: precision=bf16 on a CPU; precision=fp32,
    precision=fp16, channels_last=false and compile=true on CUDA (default there: bf16 autocast).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dcgan.config import compose_config as compose_overrides
from dcgan.config import gan_settings
from dcgan.data import build_dataset
from dcgan.gan import GANPair
from dcgan.loader import build_loader
from dcgan.models import Architecture, Generator
from dcgan.runtime import configure_backends, resolve_device, seed_everything
from dcgan.sample import generate

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


def conv_ceiling(device: torch.device, iterations: int) -> float:
    """FLOP/s of one large channels_last convolution forward + backward (input and weights)."""
    conv = nn.Conv2d(256, 512, 4, 2, 1, bias=False).to(device, memory_format=torch.channels_last)
    x = torch.randn(128, 256, 16, 16, device=device).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def once():
        conv(x).sum().backward()

    once()
    seconds = timed(once, iterations, device)
    macs = 128 * 256 * 512 * 16 * 8 * 8
    return 3 * 2 * macs * iterations / seconds


def synthetic_celeba(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (folder / "img_align_celeba").mkdir(parents=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / f"{index:06d}.jpg", quality=90)
    return folder


def images_per_second(dataset, batch_size: int, seed: int = 0) -> float:
    loader, _ = build_loader(dataset, batch_size, seed, num_workers=None)
    started, count = time.perf_counter(), 0
    for images, _ in loader:
        count += images.shape[0]
    return count / (time.perf_counter() - started)


# -- the measurements --------------------------------------------------------------------------

def project_trainer(device, batch, *overrides) -> GANPair:
    """The project's GAN pair with the training defaults (it needs no data set or run dir)."""
    cfg = compose_config("dataset=fake", "dataset.channels=3", f"batch_size={batch}",
                         f"device={device.type}", *overrides)
    seed_everything(0)
    return GANPair(gan_settings(cfg, steps_per_epoch=1), device)


def variants_for(device: torch.device) -> list[str]:
    """The non-default settings worth a row on this device: bf16 is opt-in on CPUs (fast with
    AMX, many times slower without); on CUDA the default is bf16, so fp32, fp16 and compile."""
    if device.type == "cuda":
        return ["precision=fp32", "precision=fp16", "channels_last=false", "compile=true"]
    return ["precision=bf16"]


def measure_variant(device, batch, windows, steps, warmup, override: str) -> float:
    """The project's trainer with one setting changed from its default."""
    trainer = project_trainer(device, batch, override)
    real = torch.rand(batch, 3, 64, 64).mul_(2).sub_(1)
    step = lambda: trainer.train_step(real, 0)  # noqa: E731
    timed(step, warmup, device)
    return statistics.median(batch * steps / timed(step, steps, device) for _ in range(windows))


def measure_training(device, batch, windows, steps, warmup) -> dict:
    trainer = project_trainer(device, batch)
    reference = ReferenceLoop(device)
    real = torch.rand(batch, 3, 64, 64).mul_(2).sub_(1)
    if device.type == "cuda":
        real = real.pin_memory()
    project_step = lambda: trainer.train_step(real, 0)  # noqa: E731
    reference_step = lambda: reference.step(real)  # noqa: E731
    timed(project_step, warmup, device)
    timed(reference_step, warmup, device)
    project, ref, ratios = [], [], []
    for _ in range(windows):
        r = batch * steps / timed(reference_step, steps, device)
        p = batch * steps / timed(project_step, steps, device)
        project.append(p), ref.append(r), ratios.append(p / r)
    return {"project_img_s": statistics.median(project),
            "reference_img_s": statistics.median(ref), "ratio": statistics.median(ratios),
            "ratio_windows": [round(x, 3) for x in ratios], "arch": trainer.settings.arch}


def measure_data(count: int, training_img_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = SHARED_CELEBA if SHARED_CELEBA.is_dir() else synthetic_celeba(Path(tmp) / "celeba", count)
        overrides = ["dataset=celeba", f"dataset.root={root}", f"dataset.limit={count}",
                     f"dataset.cache_dir={tmp}/cache"]
        jpeg = images_per_second(build_dataset(compose_config(*overrides).dataset), 128)
        started = time.perf_counter()
        cached = build_dataset(compose_config(*overrides, "dataset.cache=true").dataset)
        prepare_s = time.perf_counter() - started
        cache = images_per_second(cached, 128)
    return {"data_source": "shared CelebA" if root == SHARED_CELEBA else "synthetic JPEGs",
            "data_images": count, "data_jpeg_img_s": jpeg, "data_cache_img_s": cache,
            "cache_build_s": prepare_s, "cache_over_training": cache / training_img_s}


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
    args = parser.parse_args()
    device = resolve_device(args.device)
    configure_backends(device, None)  # cudnn.benchmark on CUDA, as in the textbook example too
    windows, steps, warmup = (3, 1, 1) if args.quick else (7, 3, 2)
    if device.type == "cuda":  # a step takes milliseconds: longer windows, and compile's warm-up
        steps, warmup = steps * 20, warmup * 10
    torch.manual_seed(0)

    train = measure_training(device, args.batch_size, windows, steps, warmup)
    arch = train.pop("arch")
    flops = training_flops_per_image(arch)
    variants = {override: measure_variant(device, args.batch_size, windows, steps, warmup, override)
                for override in variants_for(device)}
    ceiling = conv_ceiling(device, 2 if args.quick else 5)
    data = measure_data(256 if args.quick else 2048, train["project_img_s"])
    sampling = measure_sampling(device, arch, 512 if args.quick else 2048)

    result = {
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "quick": args.quick, **train,
        "variants_img_s": variants,
        "train_gflop_per_img": flops / 1e9, "ceiling_gflop_s": ceiling / 1e9,
        "project_gflop_s": train["project_img_s"] * flops / 1e9,
        "fraction_of_ceiling": train["project_img_s"] * flops / ceiling,
        **data, "sample_img_s": sampling,
    }
    rows = [
        ("training, dcgan trainer (defaults)", f"{result['project_img_s']:.1f} img/s"),
        ("training, textbook reference loop", f"{result['reference_img_s']:.1f} img/s"),
        ("ratio dcgan / reference (median of paired windows)", f"{result['ratio']:.2f}x"),
        *((f"training, dcgan trainer with {override}", f"{value:.1f} img/s")
          for override, value in variants.items()),
        ("training FLOPs per image (from the architecture)", f"{result['train_gflop_per_img']:.2f} GFLOP"),
        ("conv fwd+bwd ceiling", f"{result['ceiling_gflop_s']:.0f} GFLOP/s"),
        ("dcgan step / ceiling", f"{100 * result['fraction_of_ceiling']:.0f}%"),
        (f"data: JPEG decode ({data['data_source']}, default workers)", f"{result['data_jpeg_img_s']:.0f} img/s"),
        ("data: decoded-image cache", f"{result['data_cache_img_s']:.0f} img/s"),
        ("data: cache / training consumption", f"{result['cache_over_training']:.0f}x"),
        ("sampling (dcgan-sample generator)", f"{result['sample_img_s']:.0f} img/s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"dcgan benchmark on {device} ({torch.get_num_threads()} threads, torch {torch.__version__}), "
          f"batch {args.batch_size}, 64x64x3, ngf=ndf=64")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}")
    result["variants_img_s"] = {k: round(v, 2) for k, v in variants.items()}
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
