"""`dcgan-sample --interpolate K`: slerp between two latents, as a PNG strip and a GIF."""

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from dcgan.cli.sample import interpolate
from dcgan.files.images import GIF_FRAME_MS
from dcgan.nets.latents import interpolation_noise, slerp
from dcgan.nets.models import Architecture, build_models
from dcgan.store.checkpoints import load_generator, save_generator
from tests.conftest import user_error_line

CPU = torch.device("cpu")


def pair(seed: int = 0, nz: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    z0, z1 = torch.randn(2, nz, 1, 1, generator=torch.Generator().manual_seed(seed))
    return z0, z1


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm())))))


# -- slerp -------------------------------------------------------------------------------------

def test_slerp_endpoints_are_the_inputs():
    z0, z1 = pair()
    assert torch.allclose(slerp(z0, z1, 0.0), z0, rtol=0, atol=1e-6)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, rtol=0, atol=1e-6)
    assert slerp(z0, z1, 0.5).shape == z0.shape and slerp(z0, z1, 0.5).dtype == z0.dtype


def test_slerp_keeps_the_norm_and_moves_at_constant_angular_speed():
    z0, z1 = pair(seed=1)
    z1 = z1 * (z0.norm() / z1.norm())  # same length: slerp stays on that sphere
    total = angle(z0, z1)
    for t in (0.1, 0.25, 0.5, 0.9):
        zt = slerp(z0, z1, t)
        assert zt.norm().item() == pytest.approx(z0.norm().item(), rel=1e-5)
        assert angle(z0, zt) == pytest.approx(t * total, abs=1e-5)
        assert angle(zt, z1) == pytest.approx((1 - t) * total, abs=1e-5)
    # a straight line would cut through the middle, where Gaussian latents are rare
    assert slerp(z0, z1, 0.5).norm() > (0.5 * (z0 + z1)).norm()


def test_slerp_norm_goes_between_unequal_norms():
    z0, z1 = pair(seed=2)
    z1 = 3 * z1 * (z0.norm() / z1.norm())
    norms = [slerp(z0, z1, t / 10).norm().item() for t in range(11)]
    assert norms[0] == pytest.approx(z0.norm().item()) and norms[-1] == pytest.approx(
        z1.norm().item())
    assert all(norm > 0 for norm in norms)


def test_slerp_nearly_parallel_falls_back_to_lerp():
    z0, _ = pair(seed=3)
    for z1 in (2 * z0, z0 + 1e-7, -z0, torch.zeros_like(z0)):
        for t in (0.0, 0.3, 1.0):
            zt = slerp(z0, z1, t)
            assert torch.isfinite(zt).all()
            assert torch.allclose(zt, (1 - t) * z0 + t * z1, atol=1e-6)


def test_interpolation_noise_starts_and_ends_at_the_seed_draws():
    noise = interpolation_noise(16, 5, seed=4)
    z0, z1 = pair(seed=4)  # what `generate` draws first for n=2 with the same seed
    assert noise.shape == (5, 16, 1, 1)
    assert torch.equal(noise[0], z0) and torch.allclose(noise[-1], z1, rtol=0, atol=1e-6)


def test_frames_are_the_generator_on_the_endpoints(trained_run):
    generator = load_generator(trained_run / "checkpoints" / "last.pt", CPU)
    frames = interpolate(generator, 4, seed=5, device=CPU)
    z0, z1 = pair(seed=5)
    with torch.no_grad():
        ends = generator(torch.stack([z0, z1]))
    assert frames.shape == (4, 1, 64, 64)
    assert torch.allclose(frames[0], ends[0], atol=1e-5)
    assert torch.allclose(frames[-1], ends[1], atol=1e-5)
    assert not torch.allclose(frames[0], frames[-1], atol=1e-5)


# -- the command -------------------------------------------------------------------------------

def gif_frames(path) -> list[Image.Image]:
    """The frames as shown, one per GIF_FRAME_MS: the GIF writer merges a frame identical to
    the one before into it (a longer frame), and the tiny test model barely depends on z."""
    shown = []
    for frame in ImageSequence.Iterator(Image.open(path)):
        repeats = round(frame.info["duration"] / GIF_FRAME_MS)
        shown += [frame.convert("L").copy()] * repeats
    return shown


def strip_tile(strip: Image.Image, index: int, size: int = 64, padding: int = 2) -> Image.Image:
    left = padding + index * (size + padding)
    return strip.crop((left, padding, left + size, padding + size))


def max_pixel_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def test_interpolate_writes_a_strip_and_a_gif(cli, trained_run, tmp_path):
    out = tmp_path / "walk.png"
    result = cli("dcgan-sample", "--ckpt", str(trained_run), "--interpolate", "5", "--n", "9",
                 "--seed", "3", "--out", str(out), check=True)
    assert str(out.with_suffix(".gif")) in result.stderr + result.stdout
    strip = Image.open(out)
    assert strip.size == (5 * 66 + 2, 66 + 2) and strip.mode == "L"  # --n 9 is ignored
    assert Image.open(out.with_suffix(".gif")).info.get("loop") == 0
    frames = gif_frames(out.with_suffix(".gif"))
    assert len(frames) == 5
    for index, frame in enumerate(frames):
        assert frame.size == (64, 64)
        assert max_pixel_difference(frame, strip_tile(strip, index)) == 0  # gray GIFs are exact

    # the ends are what `dcgan-sample --n 2` draws with the same seed (rounding aside)
    cli("dcgan-sample", "--ckpt", str(trained_run), "--n", "2", "--seed", "3",
        "--out", str(tmp_path / "pair.png"), "--out-dir", str(tmp_path / "pair"), check=True)
    first, last = (Image.open(tmp_path / "pair" / f"sample_0000{i}.png") for i in (0, 1))
    assert max_pixel_difference(strip_tile(strip, 0), first) <= 1
    assert max_pixel_difference(strip_tile(strip, 4), last) <= 1


def test_interpolate_same_seed_same_bytes(cli, trained_run, tmp_path):
    paths = {name: tmp_path / f"{name}.png" for name in ("a", "b", "c")}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        cli("dcgan-sample", "--ckpt", str(trained_run), "--interpolate", "3", "--seed", seed,
            "--out", str(paths[name]), check=True)
    a, b, c = paths["a"], paths["b"], paths["c"]
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    gifs = [path.with_suffix(".gif").read_bytes() for path in (a, b, c)]
    assert gifs[0] == gifs[1] and gifs[0] != gifs[2]


def test_interpolate_default_output_goes_to_the_run(cli, trained_run):
    cli("dcgan-sample", "--ckpt", str(trained_run), "--interpolate", "2", "--seed", "11",
        check=True)
    strip = trained_run / "samples" / "interp_seed11_k2.png"
    assert Image.open(strip).size == (2 * 66 + 2, 68)
    assert len(gif_frames(strip.with_suffix(".gif"))) == 2


def test_interpolate_rgb_generator_file(cli, tmp_path):
    """A freshly initialised RGB generator: its images change with z, so every frame is its
    own GIF frame."""
    arch = Architecture(nz=8, ngf=4, ndf=4, channels=3, image_size=32)
    torch.manual_seed(0)
    generator, _ = build_models(arch)
    weights = tmp_path / "generator.safetensors"
    save_generator(generator.state_dict(), arch.as_dict(), weights)
    out = tmp_path / "rgb.png"
    cli("dcgan-sample", "--ckpt", str(weights), "--interpolate", "4", "--out", str(out),
        check=True)
    strip = Image.open(out)
    assert strip.size == (4 * 34 + 2, 34 + 2) and strip.mode == "RGB"
    gif = Image.open(out.with_suffix(".gif"))
    assert gif.n_frames == 4 and gif.info.get("loop") == 0
    assert gif.convert("RGB").size == (32, 32)


def test_interpolate_argument_errors(cli, trained_run, tmp_path):
    result = cli("dcgan-sample", "--ckpt", str(trained_run), "--interpolate", "1")
    assert result.returncode == 2 and "at least 2 frames" in result.stderr
    line = user_error_line(cli("dcgan-sample", "--ckpt", str(trained_run), "--interpolate", "3",
                               "--out", str(tmp_path / "walk.gif")))
    assert ".png" in line and not (tmp_path / "walk.gif").exists()
    assert "does not exist" in user_error_line(
        cli("dcgan-sample", "--ckpt", str(tmp_path / "none.pt"), "--interpolate", "3"))
