"""Tests for dcgan.quality.metrics: SWD, diversity ratio, FID/KID (with a small injected feature
extractor, checked against a direct numpy/scipy computation) and the missing-weights error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import DCGANError
from dcgan.quality.metrics import (
    INCEPTION_FILE,
    INCEPTION_FILE_TORCH_FIDELITY,
    InceptionUnavailable,
    compute_metrics,
    diversity_ratio,
    fid_kid,
    inception_available,
    laplacian_pyramid,
    mean_pairwise_distance,
    sliced_wasserstein,
)

# Small SWD settings so each call takes milliseconds; the maths is the same as the defaults.
FAST_SWD = {"descriptors_per_image": 32, "projections": 64, "repeats": 2}


def toy_images(n: int, channels: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Random images in [-1, 1]: a smooth 4x4 field upsampled plus three sharp rectangles."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 4, 4, generator=generator) - 0.5
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    rows, cols = torch.arange(size).view(1, 1, -1, 1), torch.arange(size).view(1, 1, 1, -1)
    for _ in range(3):
        top, left = torch.randint(0, size * 3 // 4, (2, n, 1, 1, 1), generator=generator)
        height, width = torch.randint(size // 8, size // 2, (2, n, 1, 1, 1), generator=generator)
        inside = ((rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width))
        images = images + inside * (torch.rand(n, channels, 1, 1, generator=generator) - 0.5)
    return images.clamp(-1, 1)


def noisy(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


# ------------------------------------------------------------------------------------------
# Sliced Wasserstein distance
# ------------------------------------------------------------------------------------------

def _reference_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Karras et al.'s numpy/scipy Laplacian pyramid (cv2.pyrDown / pyrUp with mirror borders)."""
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])[None, None].astype(np.float64) / 256

    def down(x):
        return scipy.ndimage.convolve(x, kernel, mode="mirror")[:, :, ::2, ::2]

    def up(x):
        spread = np.zeros((*x.shape[:2], x.shape[2] * 2, x.shape[3] * 2))
        spread[:, :, ::2, ::2] = x
        return scipy.ndimage.convolve(spread, kernel * 4, mode="mirror")

    pyramid = [images.astype(np.float64)]
    for _ in range(1, levels):
        pyramid.append(down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - up(pyramid[-1])
    return pyramid


def test_laplacian_pyramid_matches_reference_implementation():
    images = toy_images(2, size=32)
    ours = laplacian_pyramid(images, 3)
    reference = _reference_pyramid(images.numpy(), 3)
    assert [level.shape[-1] for level in ours] == [32, 16, 8]
    for mine, theirs in zip(ours, reference):
        np.testing.assert_allclose(mine.numpy(), theirs, atol=1e-5)


def test_swd_keys_follow_the_pyramid_levels():
    for size, levels in ((64, [64, 32, 16]), (32, [32, 16]), (128, [128, 64, 32, 16])):
        real, fake = toy_images(4, size=size), toy_images(4, size=size, seed=1)
        result = sliced_wasserstein(real, fake, **FAST_SWD)
        assert list(result) == [f"swd/{res}" for res in levels] + ["swd/mean"]
        assert result["swd/mean"] == pytest.approx(np.mean([result[f"swd/{r}"] for r in levels]))


def test_swd_of_a_set_with_itself_is_zero():
    images = toy_images(16)
    result = sliced_wasserstein(images, images.clone(), **FAST_SWD)
    assert all(abs(value) < 1e-9 for value in result.values())


def test_swd_grows_with_corruption_strength():
    real = toy_images(48)
    candidates = [toy_images(48, seed=7)] + [noisy(real, s) for s in (0.03, 0.1, 0.3)]
    results = [sliced_wasserstein(real, fake, **FAST_SWD) for fake in candidates]
    for key in ("swd/64", "swd/mean"):
        values = [result[key] for result in results]
        assert values == sorted(values) and values[0] < 0.7 * values[1], (key, values)


def test_swd_sees_blur_at_the_finest_level():
    real = toy_images(48)
    blurred = F.avg_pool2d(F.pad(real, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    independent = sliced_wasserstein(real, toy_images(48, seed=7), **FAST_SWD)
    assert sliced_wasserstein(real, blurred, **FAST_SWD)["swd/64"] > 1.5 * independent["swd/64"]


def test_swd_is_deterministic_for_a_seed():
    real, fake = toy_images(16), toy_images(16, seed=1)
    first = sliced_wasserstein(real, fake, seed=3, **FAST_SWD)
    assert sliced_wasserstein(real, fake, seed=3, **FAST_SWD) == first
    assert sliced_wasserstein(real, fake, seed=4, **FAST_SWD) != first


def test_swd_with_default_settings_and_grayscale_images():
    real, fake = toy_images(8, channels=1), toy_images(8, channels=1, seed=1)
    result = sliced_wasserstein(real, fake)
    assert set(result) == {"swd/64", "swd/32", "swd/16", "swd/mean"}
    assert all(np.isfinite(v) and v > 0 for v in result.values())


def test_swd_survives_constant_images():
    real, fake = toy_images(8), torch.zeros(8, 3, 64, 64)
    assert all(np.isfinite(v) for v in sliced_wasserstein(real, fake, **FAST_SWD).values())


def test_metrics_refuse_mismatched_image_sets():
    with pytest.raises(DCGANError, match="generator's image size"):
        sliced_wasserstein(toy_images(4, size=64), toy_images(4, size=32))
    with pytest.raises(DCGANError, match="generator's image size"):
        diversity_ratio(toy_images(4, channels=1), toy_images(4, channels=3))
    with pytest.raises(DCGANError, match="square images"):
        sliced_wasserstein(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))


# ------------------------------------------------------------------------------------------
# Diversity
# ------------------------------------------------------------------------------------------

def test_diversity_ratio_is_near_one_for_the_same_distribution():
    real, fake = toy_images(256), toy_images(256, seed=5)
    assert 0.8 < diversity_ratio(fake, real) < 1.2


def test_diversity_ratio_is_near_zero_for_a_collapsed_generator():
    real = toy_images(256)
    collapsed = toy_images(1, seed=5).expand(256, -1, -1, -1)
    assert diversity_ratio(collapsed, real) < 0.05
    slightly_noisy = noisy(collapsed, 0.01)
    assert diversity_ratio(slightly_noisy, real) < 0.05


def test_mean_pairwise_distance_sampled_pairs_approximate_all_pairs():
    images = toy_images(200, size=32)
    exact = mean_pairwise_distance(images, max_pairs=10**6)
    rows = images.flatten(1)
    assert exact == pytest.approx(torch.cdist(rows, rows).sum().item() / (200 * 199), rel=1e-4)
    sampled = mean_pairwise_distance(images, max_pairs=2000, seed=1)
    assert sampled == pytest.approx(exact, rel=0.05)
    assert mean_pairwise_distance(images, max_pairs=2000, seed=1) == sampled


# ------------------------------------------------------------------------------------------
# FID and KID
# ------------------------------------------------------------------------------------------

class RecordingProjection(nn.Module):
    """A fixed random linear map of uint8 pixels to 16 features that keeps what it was fed."""

    def __init__(self, pixels: int, dims: int = 16, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(pixels, dims, generator=generator))
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.clone())
        return (images.float().flatten(1) / 255) @ self.weight / self.weight.shape[0] ** 0.5

    def numpy_features(self, images: torch.Tensor) -> np.ndarray:
        weight = self.weight.double().numpy()
        pixels = images.double().flatten(1).numpy() / 255
        return pixels @ weight / weight.shape[0] ** 0.5


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def reference_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on the full sets."""
    d, m = a.shape[1], len(a)

    def kernel(x, y):
        return (x @ y.T / d + 1) ** 3

    k_aa, k_bb, k_ab = kernel(a, a), kernel(b, b), kernel(a, b)
    off_diagonal = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(off_diagonal - 2 * k_ab.mean())


def fid_sets(channels: int = 3, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    real = toy_images(n, channels=channels, size=8)
    fake = 0.6 * toy_images(n, channels=channels, size=8, seed=9) + 0.2
    return real, fake


def test_fid_and_kid_match_a_direct_computation():
    real, fake = fid_sets()
    extractor = RecordingProjection(3 * 8 * 8)
    result = fid_kid(real, fake, feature_extractor=extractor, kid_subset_size=len(real))
    seen_real, seen_fake = extractor.seen
    features_real = extractor.numpy_features(seen_real)
    features_fake = extractor.numpy_features(seen_fake)
    assert result["fid"] == pytest.approx(reference_fid(features_real, features_fake), rel=1e-5)
    assert result["kid"] == pytest.approx(reference_kid(features_real, features_fake), rel=1e-5)
    assert result["kid_std"] < 1e-6 * abs(result["kid"]) + 1e-12  # one subset, permuted
    assert result["fid"] > 0.1 and result["kid"] > 0


def test_fid_kid_feed_the_extractor_uint8_rgb():
    real, fake = fid_sets(channels=1)
    extractor = RecordingProjection(3 * 8 * 8)
    fid_kid(real, fake, feature_extractor=extractor)  # default KID subset (100) capped at 60
    seen_real = extractor.seen[0]
    assert seen_real.dtype == torch.uint8 and seen_real.shape == (60, 3, 8, 8)
    expected = ((real + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(seen_real, expected.expand(-1, 3, -1, -1))


def test_kid_subsets_are_seeded():
    real, fake = fid_sets(n=60)
    extractor = RecordingProjection(3 * 8 * 8)
    first = fid_kid(real, fake, feature_extractor=extractor, kid_subset_size=20, seed=1)
    again = fid_kid(real, fake, feature_extractor=extractor, kid_subset_size=20, seed=1)
    assert first == again and first["kid_std"] > 0


def test_compute_metrics_keys():
    real, fake = toy_images(16, size=32), toy_images(16, size=32, seed=1)
    basic = compute_metrics(real, fake)
    assert set(basic) == {"swd/32", "swd/16", "swd/mean", "diversity", "precision", "recall"}
    extractor = RecordingProjection(3 * 32 * 32)
    full = compute_metrics(real, fake, fid=True, feature_extractor=extractor)
    assert set(full) == set(basic) | {"fid", "kid", "kid_std", "inception_precision",
                                      "inception_recall"}
    assert full["swd/mean"] == basic["swd/mean"]


# ------------------------------------------------------------------------------------------
# Missing Inception weights
# ------------------------------------------------------------------------------------------

@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """Point torch hub's cache at an empty folder; returns its checkpoints folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def _assert_helpful(message: str) -> None:
    assert INCEPTION_FILE in message and "eval.inception_weights" in message
    assert "https://github.com/toshas/torch-fidelity/releases" in message
    assert "\n" not in message


def test_missing_weights_file_raises_inception_unavailable(tmp_path, empty_hub):
    real, fake = fid_sets()
    missing = tmp_path / "nowhere" / INCEPTION_FILE
    assert not inception_available(missing)
    with pytest.raises(InceptionUnavailable) as error:
        fid_kid(real, fake, inception_weights=missing)
    _assert_helpful(str(error.value))
    assert str(missing) in str(error.value)


def test_missing_cached_weights_raise_inception_unavailable(empty_hub):
    real, fake = fid_sets()
    assert not inception_available()
    with pytest.raises(InceptionUnavailable) as error:
        compute_metrics(real.repeat(1, 1, 2, 2), fake.repeat(1, 1, 2, 2), fid=True)
    _assert_helpful(str(error.value))
    assert str(empty_hub / INCEPTION_FILE) in str(error.value)
    assert isinstance(error.value, DCGANError)


def test_cached_weights_under_either_name_are_found(empty_hub):
    empty_hub.mkdir(parents=True)
    (empty_hub / INCEPTION_FILE_TORCH_FIDELITY).write_bytes(b"")
    assert inception_available()


def test_unreadable_weights_file_raises_inception_unavailable(tmp_path, empty_hub):
    broken = tmp_path / INCEPTION_FILE
    broken.write_bytes(b"not a checkpoint")
    real, fake = fid_sets()
    with pytest.raises(InceptionUnavailable, match="not a readable FID Inception weights"):
        fid_kid(real, fake, inception_weights=broken)


# -- precision and recall ------------------------------------------------------------------------

def test_precision_and_recall_tell_quality_from_coverage():
    from dcgan.quality.metrics import precision_recall

    rng = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=rng)
    same = torch.randn(400, 8, generator=rng)
    half = same[same[:, 0] > 0]  # G covers half of the data, and only makes what it has
    off = torch.randn(400, 8, generator=rng) + 6.0  # G makes things the data does not have
    good = precision_recall(real, same)
    assert good["precision"] > 0.8 and good["recall"] > 0.8
    partial = precision_recall(real, half)
    assert partial["precision"] > 0.8 and partial["recall"] < good["recall"] - 0.1
    wrong = precision_recall(real, off)
    assert wrong["precision"] < 0.05 and wrong["recall"] < 0.05


def test_pixel_precision_recall_sees_a_collapse():
    from dcgan.quality.metrics import compute_metrics

    rng = torch.Generator().manual_seed(1)
    real = torch.rand(128, 1, 32, 32, generator=rng) * 2 - 1
    collapsed = real[:1].repeat(128, 1, 1, 1)  # one real image, 128 times
    metrics = compute_metrics(real, collapsed)
    assert metrics["precision"] == 1.0  # it is on the data ...
    assert metrics["recall"] < 0.05  # ... but covers almost none of it
    assert {"precision", "recall"} <= set(compute_metrics(real, real.flip(0)))


def test_fid_kid_come_with_precision_and_recall_on_the_same_features():
    from dcgan.quality.metrics import precision_recall

    real, fake = fid_sets()
    extractor = RecordingProjection(3 * 8 * 8)
    result = fid_kid(real, fake, feature_extractor=extractor, kid_subset_size=20)
    seen_real, seen_fake = extractor.seen
    expected = precision_recall(extractor(seen_real), extractor(seen_fake))
    assert result["inception_precision"] == expected["precision"]
    assert result["inception_recall"] == expected["recall"]
