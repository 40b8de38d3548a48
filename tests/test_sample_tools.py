"""dcgan-sample's seeds, truncation, ema|raw choice and keyframe walks (GIF, MP4)."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from dcgan.errors import DCGANError
from dcgan.files.video import video_available
from dcgan.nets.latents import (
    batch_latents,
    keyframe_walk,
    parse_seeds,
    seed_latent,
    truncate,
    truncation_threshold,
)
from tests.conftest import TINY, user_error_line


def test_seed_lists_and_ranges():
    assert parse_seeds("0-3,40,2,42") == [0, 1, 2, 3, 40, 42]
    for bad in ("3-1", "a", "1,,2", "-4"):
        with pytest.raises(DCGANError, match="--seeds"):
            parse_seeds(bad)


def test_truncation_keeps_the_central_mass_and_psi_one_changes_nothing():
    assert math.isinf(truncation_threshold(1.0))
    assert truncation_threshold(0.6827) == pytest.approx(1.0, abs=1e-3)  # one sigma
    assert torch.equal(batch_latents(8, 100, seed=3), torch.randn(
        8, 100, 1, 1, generator=torch.Generator().manual_seed(3)))  # psi 1: as always
    truncated = batch_latents(64, 100, seed=3, psi=0.5)
    assert truncated.abs().max() <= truncation_threshold(0.5)
    plain = batch_latents(64, 100, seed=3)
    inside = plain.abs() <= truncation_threshold(0.5)
    assert torch.equal(truncated[inside], plain[inside])  # only the outliers are drawn again
    assert 0.4 < inside.float().mean() < 0.6  # psi 0.5: half the coordinates were inside
    rng = torch.Generator().manual_seed(0)
    assert torch.equal(truncate(plain, 1.0, rng), plain)


def test_a_seed_is_its_own_latent():
    assert torch.equal(seed_latent(42, 16), batch_latents(1, 16, 42)[0])
    assert not torch.equal(seed_latent(42, 16), seed_latent(43, 16))


def test_a_walk_loops_through_its_keyframes():
    keys = [seed_latent(seed, 16) for seed in range(3)]
    walk = keyframe_walk(keys, frames_between=4)
    assert walk.shape == (12, 16, 1, 1)
    for index, key in enumerate(keys):
        assert torch.allclose(walk[4 * index], key)
    # the step from the last frame back to the first is as small as the steps in between
    steps = (walk - walk.roll(-1, dims=0)).flatten(1).norm(dim=1)
    assert steps.max() < 2.5 * steps.min()


@pytest.mark.slow
def test_seeds_give_the_same_image_whatever_else_is_asked(cli, trained_run, tmp_path):
    cli("dcgan-sample", "--ckpt", str(trained_run), "--seeds", "40-43",
        "--out", str(tmp_path / "a.png"), "--out-dir", str(tmp_path / "a"), check=True)
    cli("dcgan-sample", "--ckpt", str(trained_run), "--seeds", "7,42,100",
        "--out", str(tmp_path / "b.png"), "--out-dir", str(tmp_path / "b"), check=True)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "seed0040.png", "seed0041.png", "seed0042.png", "seed0043.png"]
    assert (tmp_path / "a" / "seed0042.png").read_bytes() == \
        (tmp_path / "b" / "seed0042.png").read_bytes()
    assert (tmp_path / "a" / "seed0041.png").read_bytes() != \
        (tmp_path / "a" / "seed0042.png").read_bytes()
    assert Image.open(tmp_path / "a.png").size == (2 * 66 + 2, 2 * 66 + 2)  # a 2x2 grid
    default = cli("dcgan-sample", "--ckpt", str(trained_run), "--seeds", "1-2", check=True)
    assert (trained_run / "samples" / "seeds" / "seed0001.png").is_file(), default.stderr


@pytest.mark.slow
def test_truncation_and_raw_weights_change_the_images(cli, tmp_path):
    run = tmp_path / "ema_run"
    cli("dcgan-train", *TINY, "epochs=1", "eval.every=0", "ema.decay=0.9",
        f"hydra.run.dir={run}", check=True)

    def grid(*args):
        out = tmp_path / f"grid{len(list(tmp_path.glob('grid*')))}.png"
        cli("dcgan-sample", "--ckpt", str(run), "--n", "4", *args, "--out", str(out),
            check=True)
        return out.read_bytes()

    plain = grid()
    assert grid("--truncation", "1") == plain
    assert grid("--truncation", "0.5") != plain
    assert grid("--generator", "ema") == plain  # the moving average is the default
    assert grid("--generator", "raw") != plain
    refused = cli("dcgan-sample", "--ckpt", str(run), "--truncation", "0")  # argparse's usage
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1].endswith("--truncation: must be in (0, 1], got 0.0")


@pytest.mark.slow
def test_a_grid_of_looping_walks(cli, trained_run, tmp_path):
    out = tmp_path / "walk.gif"
    result = cli("dcgan-sample", "--ckpt", str(trained_run), "--keyframes", "3",
                 "--interpolate", "4", "--grid", "2", "--out", str(out), check=True)
    gif = Image.open(out)
    assert gif.n_frames == 12 and gif.info["loop"] == 0
    assert gif.size == (2 * 66 + 2, 2 * 66 + 2)  # each frame a 2x2 grid of walks
    frames = []
    for index in range(gif.n_frames):
        gif.seek(index)
        frames.append(gif.convert("L").tobytes())
    assert len(set(frames)) > 6  # it moves
    mp4 = out.with_suffix(".mp4")
    if video_available():
        assert mp4.is_file() and mp4.read_bytes()[4:8] == b"ftyp", result.stderr
    else:
        assert not mp4.exists()
    assert "--keyframes M needs --interpolate" in user_error_line(
        cli("dcgan-sample", "--ckpt", str(trained_run), "--keyframes", "3"))
    assert "give a .gif or .mp4" in user_error_line(
        cli("dcgan-sample", "--ckpt", str(trained_run), "--keyframes", "3", "--interpolate",
            "4", "--out", str(tmp_path / "w.png")))
