"""`dcgan-export`: a trained generator as one file that runs without this package.

    dcgan-export --ckpt runs/digits/2026-11-22_10-00-00 --format torchscript --out generator.pt
    python -c "import torch; print(torch.jit.load('generator.pt')(torch.randn(4, 100, 1, 1)).shape)"

    pip install "dcgan[onnx]"
    dcgan-export --ckpt runs/digits/2026-11-22_10-00-00/checkpoints/generator.safetensors \\
        --format onnx --out generator.onnx

The exported model is the generator in eval mode (BatchNorm running statistics): z of shape
(N, nz, 1, 1), any N, to images (N, channels, S, S) in [-1, 1]; the ONNX graph names them `z`
and `images`. A conditional generator takes (z, y) with y (N, K) its label vectors (one-hot
classes, or 0/1 attributes, in the order dcgan-sample lists them); ONNX names it `y`. Before
the file is written, the exported bytes are loaded back (TorchScript with torch.jit.load,
ONNX with onnxruntime where it is installed) and run next to the eager generator on a fixed
noise batch (seed 0, 8 samples): the max abs difference is logged, and above 1e-4 it is an
error and nothing is written. The file is written atomically.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from dcgan.errors import ArgumentParser, DCGANError, reports_errors

if TYPE_CHECKING:
    import torch

    from dcgan.nets.models import Generator

# torch and the checkpoint store are imported where they are used, so that --help and a usage
# error answer at once.

log = logging.getLogger("dcgan.cli.export")

TOLERANCE = 1e-4
CHECK_SEED, CHECK_BATCH = 0, 8
ONNX_HINT = 'pip install "dcgan[onnx]"'


def check_noise(nz: int, seed: int = CHECK_SEED, batch: int = CHECK_BATCH) -> torch.Tensor:
    """The fixed batch the exported model is checked on (also the example input it is traced
    with); drawn from its own CPU generator, like dcgan-sample's noise."""
    import torch

    return torch.randn(batch, nz, 1, 1, generator=torch.Generator().manual_seed(seed))


def check_inputs(generator: Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(z,) for an unconditional generator; (z, y) for a conditional one, y cycling through
    the one-hot labels (every class, or each attribute alone)."""
    import torch

    noise = check_noise(generator.arch.nz).to(device)
    if not generator.arch.conditional:
        return (noise,)
    size = generator.arch.label_size
    return noise, torch.eye(size)[torch.arange(len(noise)) % size].to(device)


def torchscript_bytes(generator: Generator, example: tuple[torch.Tensor, ...]) -> bytes:
    """The traced generator as torch.jit.save writes it."""
    import torch

    buffer = io.BytesIO()
    with _without_jit_deprecation():
        torch.jit.save(torch.jit.trace(generator, example), buffer)
    return buffer.getvalue()


def run_torchscript(data: bytes, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    import torch

    with _without_jit_deprecation():
        module = torch.jit.load(io.BytesIO(data), map_location=inputs[0].device)
    with torch.no_grad():
        return module(*inputs)


@contextmanager
def _without_jit_deprecation() -> Iterator[None]:
    # torch.jit is deprecated in favour of torch.export, but a TorchScript file is still what
    # a plain torch.jit.load runs; the FutureWarning is no news to a user of this command.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated",
                                category=FutureWarning)
        yield


def require_onnx() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise DCGANError(f"--format onnx needs the onnx package, which is not installed: "
                         f"{ONNX_HINT}")


def onnx_bytes(generator: Generator, example: tuple[torch.Tensor, ...]) -> bytes:
    """The generator as an ONNX graph z [, y] -> images with a dynamic batch axis.

    This uses the TorchScript-based exporter (dynamo=False): it needs only the `onnx` package,
    where the default torch.export-based one also needs `onnxscript`.
    """
    import torch

    names = INPUT_NAMES[:len(example)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy-exporter notice
        torch.onnx.export(generator, example, buffer, dynamo=False, input_names=list(names),
                          output_names=["images"],
                          dynamic_axes={name: {0: "batch"} for name in (*names, "images")})
    return buffer.getvalue()


INPUT_NAMES = ("z", "y")  # the ONNX graph's inputs: noise, and a conditional G's label vectors


def run_onnx(data: bytes, inputs: tuple[torch.Tensor, ...]) -> Optional[torch.Tensor]:
    """The ONNX model's output under onnxruntime on the CPU; None where it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = {name: tensor.cpu().numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
    (images,) = session.run(["images"], feed)
    return torch.from_numpy(images)


# format -> (serialise the generator, run the serialised bytes or None when it cannot be run)
EXPORTERS: dict[str, tuple[Callable[[Generator, tuple], bytes],
                           Callable[[bytes, tuple], Optional[torch.Tensor]]]] = {
    "torchscript": (torchscript_bytes, run_torchscript),
    "onnx": (onnx_bytes, run_onnx),
}


def max_difference(expected: torch.Tensor, actual: torch.Tensor) -> float:
    if actual.shape != expected.shape:
        return float("inf")
    return (expected.cpu() - actual.cpu()).abs().max().item()


def check_export(fmt: str, expected: torch.Tensor, actual: Optional[torch.Tensor]) -> None:
    """Log how far the exported model is from the eager one; refuse it beyond TOLERANCE."""
    if actual is None:
        log.info("onnxruntime is not installed: skipped the numeric check of the %s export "
                 "(pip install onnxruntime to run it)", fmt)
        return
    difference = max_difference(expected, actual)
    log.info("max abs difference vs the eager generator on %d fixed samples: %.3g",
             len(expected), difference)
    if not difference <= TOLERANCE:  # also catches nan
        raise DCGANError(f"the {fmt} export does not reproduce the generator: max abs difference "
                         f"{difference:.3g} > {TOLERANCE:g} on a fixed batch; nothing was written")


def export(args: argparse.Namespace) -> Path:
    """Load, export, check and write; returns the path written."""
    import torch

    from dcgan.files.atomic import write_atomic
    from dcgan.runtime.process import resolve_device
    from dcgan.store.checkpoints import load_generator, resolve_checkpoint

    if args.format == "onnx":
        require_onnx()
    if args.out.is_dir():
        raise DCGANError(f"--out {args.out} is a folder; give the path of the file to write")
    checkpoint = resolve_checkpoint(args.ckpt, allow_generator=True)
    # An ONNX graph is device-free; exporting on the CPU lets onnxruntime's CPU run compare
    # like with like (a GPU's TF32 convolutions alone can differ by more than the tolerance).
    device = torch.device("cpu") if args.format == "onnx" else resolve_device(args.device)
    generator = load_generator(checkpoint, device)
    serialise, run = EXPORTERS[args.format]
    inputs = check_inputs(generator, device)
    data = serialise(generator, inputs)
    with torch.no_grad():
        expected = generator(*inputs)
    check_export(args.format, expected, run(data, inputs))
    write_atomic(args.out, data)
    return args.out


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="dcgan-export", description="Write a dcgan generator as a TorchScript or ONNX file "
        "that maps z (N x nz x 1 x 1) to images in [-1, 1] without this package.")
    parser.add_argument("--ckpt", required=True,
                        help="a checkpoint (.pt), a generator.safetensors, or a run directory "
                        "(uses checkpoints/last.pt)")
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS),
                        help=f"torchscript (torch.jit.load) or onnx (needs {ONNX_HINT})")
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"],
                        help="where the TorchScript module is traced and checked, and where "
                        "its weights live (default cpu; ONNX always exports on the CPU)")
    return parser.parse_args(argv)


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    out = export(args)
    log.info("wrote %s (%s)", out, args.format)


if __name__ == "__main__":
    main()
