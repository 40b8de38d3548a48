import pytest
import torch
import torch.nn.functional as F

from dcgan.errors import DCGANError
from dcgan.nets.augment import (
    annealed_std,
    color,
    cutout,
    diff_augment,
    instance_noise,
    parse_policy,
    translation,
)

FULL = "color,translation,cutout"


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=seeded(seed)) * 2 - 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL])
def test_shapes_kept_and_gradients_reach_the_images(policy, channels):
    x = images(channels=channels).requires_grad_(True)
    out = diff_augment(x, policy, seeded())
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for i in range(len(x)):  # every image gets a gradient, not only some of the batch
        assert x.grad[i].abs().sum() > 0


@pytest.mark.parametrize("policy", ["", " ", [], ","])
def test_an_empty_policy_is_the_identity_and_draws_nothing(policy):
    x = images()
    state = torch.get_rng_state()
    assert diff_augment(x, policy) is x
    assert torch.equal(torch.get_rng_state(), state)


def test_policy_names_are_checked():
    assert parse_policy(" color , cutout") == ["color", "cutout"]
    assert parse_policy(["translation"]) == ["translation"]
    with pytest.raises(DCGANError, match="colour"):
        diff_augment(images(), "colour")


def test_the_same_seed_gives_the_same_transforms():
    x = images()
    first, again = diff_augment(x, FULL, seeded(7)), diff_augment(x, FULL, seeded(7))
    assert torch.equal(first, again)
    assert not torch.equal(first, diff_augment(x, FULL, seeded(8)))
    # two batches, one seed: identical transforms (here visible as identical cutout holes)
    ones = torch.ones_like(x)
    assert torch.equal(diff_augment(x, "cutout", seeded(3)) == 0,
                       diff_augment(ones, "cutout", seeded(3)) == 0)


def test_global_rng_is_used_without_a_generator():
    x = images()
    torch.manual_seed(5)
    first = diff_augment(x, FULL)
    torch.manual_seed(5)
    assert torch.equal(diff_augment(x, FULL), first)


def test_each_image_draws_its_own_parameters():
    x = images(n=1).expand(16, -1, -1, -1)  # one image, sixteen times
    out = diff_augment(x, FULL, seeded())
    distinct = {tuple(out[i].flatten().tolist()) for i in range(len(out))}
    assert len(distinct) == 16


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved down by dy and right by dx, zero-filled (the reference for translation)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)))
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top:top + h, left:left + w]


def test_translation_moves_content_by_whole_pixels_up_to_an_eighth():
    x = images(n=32, size=32)  # shift at most 4 pixels each way
    out = translation(x, seeded())
    found = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.equal(out[i], shifted(x[i], dy, dx))]
        assert len(matches) == 1, f"image {i} is not a shifted copy"
        found.append(matches[0])
    assert len(set(found)) > 10  # the shifts vary from image to image
    assert {dy for dy, _ in found} >= {-4, 4} or {dx for _, dx in found} >= {-4, 4}


def test_cutout_zeroes_one_clipped_square_of_half_the_size():
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, seeded())
    assert set(out.unique().tolist()) == {0.0, 1.0}  # 0 is the fill value, mid-grey in [-1, 1]
    full_squares = 0
    for hole in out[:, 0] == 0:
        rows, cols = hole.any(dim=1), hole.any(dim=0)
        height, width = int(rows.sum()), int(cols.sum())
        # one rectangle: the hole is exactly the product of its rows and its columns
        assert torch.equal(hole, rows[:, None] & cols[None, :])
        assert 8 <= height <= 16 and 8 <= width <= 16  # clipped at most to half the side
        row_idx = rows.nonzero().flatten()
        assert int(row_idx[-1] - row_idx[0]) + 1 == height  # contiguous
        touches_edge = bool(rows[0] or rows[-1] or cols[0] or cols[-1])
        if not touches_edge:
            assert (height, width) == (16, 16)
            full_squares += 1
    assert full_squares > 0
    assert torch.equal(out[:, 0], out[:, 2])  # the same hole in every channel


def test_color_on_one_channel_is_brightness_then_contrast():
    x = images(n=6, channels=1)
    out = color(x, seeded(4))
    draws = seeded(4)
    brightness = torch.rand(6, 1, 1, 1, generator=draws) - 0.5
    contrast = torch.rand(6, 1, 1, 1, generator=draws) + 0.5
    bright = x + brightness
    mean = bright.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out, (bright - mean) * contrast + mean, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_color_on_a_flat_image_is_a_brightness_shift_within_half(channels):
    x = torch.full((64, channels, 8, 8), 0.3)  # saturation and contrast leave it flat
    shift = color(x, seeded()) - x
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert per_image.abs().max() <= 0.5 and per_image.std(dim=0).mean() > 0.1


def test_color_stays_finite_at_the_extremes():
    x = torch.cat([torch.ones(4, 3, 8, 8), -torch.ones(4, 3, 8, 8)])
    assert torch.isfinite(color(x, seeded())).all()


def test_instance_noise_has_the_asked_std():
    x = torch.zeros(16, 3, 32, 32)
    noisy = instance_noise(x, 0.2, seeded())
    assert noisy.std().item() == pytest.approx(0.2, rel=0.03)
    assert noisy.mean().item() == pytest.approx(0.0, abs=0.005)
    assert torch.equal(noisy, instance_noise(x, 0.2, seeded()))
    assert instance_noise(x, 0.0) is x


def test_instance_noise_is_differentiable():
    x = images().requires_grad_(True)
    instance_noise(x, 0.1).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_annealing_falls_linearly_to_zero():
    assert annealed_std(0.1, 0.0) == pytest.approx(0.1)
    assert annealed_std(0.1, 0.25) == pytest.approx(0.075)
    assert annealed_std(0.1, 1.0) == 0.0
    assert annealed_std(0.1, 3.0) == 0.0 and annealed_std(0.1, -1.0) == pytest.approx(0.1)
