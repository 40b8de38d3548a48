"""How good and how varied the generated images are: SWD, diversity ratio, FID and KID.

All functions take images as float tensors N x C x H x W in [-1, 1] (C = 1 or 3).

- sliced_wasserstein: multi-scale sliced Wasserstein distance on Laplacian-pyramid patches
  (Karras et al. 2018, Progressive GAN, their `sliced_wasserstein.py`), reported x 1e3.
- diversity_ratio: mean pairwise distance of generated samples over that of real images;
  near 1 is healthy, near 0 means mode collapse.
- fid_kid: FID and KID through torchmetrics, with the FID Inception network of torch-fidelity
  loaded from a local weights file (never downloaded) or any feature module given.
- compute_metrics: all of the above in one flat dict, as training and `dcgan-eval` log them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.errors import DCGANError
from dcgan.files.images import to_uint8

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
# torch-fidelity (and so torchmetrics) caches the same weights under this name when online.
INCEPTION_FILE_TORCH_FIDELITY = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


class InceptionUnavailable(DCGANError):
    """FID/KID were asked for but the Inception weights file is missing or unreadable."""


# --------------------------------------------------------------------------------------------
# Checks shared by the metrics
# --------------------------------------------------------------------------------------------

def _check_images(images: torch.Tensor, name: str) -> None:
    """Raise DCGANError unless `images` is a float N x C x H x W batch with C in (1, 3)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise DCGANError(f"{name} images must be float N x C x H x W with C = 1 or 3, got "
                         f"{images.dtype} {tuple(images.shape)}; pass images in [-1, 1]")


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    """Raise DCGANError unless real and fake are image batches of the same C x H x W."""
    _check_images(real, "real")
    _check_images(fake, "generated")
    if real.shape[1:] != fake.shape[1:]:
        raise DCGANError(f"real images are {tuple(real.shape[1:])} but generated images are "
                         f"{tuple(fake.shape[1:])}; use a data set at the generator's image "
                         "size and channel count")


# --------------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian-pyramid patches
# --------------------------------------------------------------------------------------------

def _binomial(images: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Filter along `dim` with [1,4,6,4,1]/16 (no padding), keeping every `step`-th output."""
    length = (images.shape[dim] - 4 + step - 1) // step

    def tap(offset: int) -> torch.Tensor:
        index = [slice(None)] * images.dim()
        index[dim] = slice(offset, offset + step * (length - 1) + 1, step)
        return images[tuple(index)]

    return (tap(0) + tap(4) + 4.0 * (tap(1) + tap(3)) + 6.0 * tap(2)) / 16.0


def _blur(images: torch.Tensor, step: int = 1) -> torch.Tensor:
    """The 5x5 binomial blur with mirror borders (as cv2 / scipy 'mirror'), every step-th pixel."""
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    return _binomial(_binomial(padded, -1, step), -2, step)


def _pyr_down(images: torch.Tensor) -> torch.Tensor:
    """Blur, then keep every second pixel: the next Gaussian-pyramid level (half size)."""
    return _blur(images, step=2)


def _pyr_up(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-insert to double size, blur with 4x the kernel, crop to `size` (cv2.pyrUp)."""
    n, c, h, w = images.shape
    spread = images.new_zeros(n, c, 2 * h, 2 * w)
    spread[:, :, ::2, ::2] = images
    return (4.0 * _blur(spread))[:, :, : size[0], : size[1]]


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Return `levels` tensors, finest first: image - up(down(image)) at each scale, and the
    coarsest Gaussian level last."""
    pyramid = [images]
    for _ in range(1, levels):
        coarser = _pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - _pyr_up(coarser, pyramid[-1].shape[-2:])
        pyramid.append(coarser)
    return pyramid


def _pyramid_resolutions(size: int, min_resolution: int) -> list[int]:
    """Return the level sizes from `size` halving down to (and including) `min_resolution`."""
    resolutions = []
    while size >= min_resolution:
        resolutions.append(size)
        size //= 2
    return resolutions


def _random_patches(level: torch.Tensor, per_image: int, patch: int,
                    generator: torch.Generator) -> torch.Tensor:
    """Return `per_image` random patch x patch crops of every image: (N * per_image) x C x p x p."""
    n, _, h, w = level.shape
    count = n * per_image
    top = torch.randint(0, h - patch + 1, (count,), generator=generator).to(level.device)
    left = torch.randint(0, w - patch + 1, (count,), generator=generator).to(level.device)
    image = torch.arange(n, device=level.device).repeat_interleave(per_image)
    windows = level.unfold(2, patch, 1).unfold(3, patch, 1)  # N x C x H' x W' x p x p (a view)
    return windows[image, :, top, left]


def _normalize_descriptors(patches: torch.Tensor) -> torch.Tensor:
    """Standardise each channel over all patches and pixels; return flat M x (C * p * p)."""
    var, mean = torch.var_mean(patches, dim=(0, 2, 3), keepdim=True, correction=0)
    return ((patches - mean) / var.sqrt().clamp_min(1e-8)).flatten(1)


def _sorted_rows(values: torch.Tensor) -> torch.Tensor:
    """Sort each row; on CPU numpy's vectorised sort is about 20x faster than torch.sort."""
    if values.device.type != "cpu":
        return values.sort(dim=1).values
    array = values.contiguous().numpy()
    array.sort(axis=1)
    return torch.from_numpy(array)


def _sliced_distance(a: torch.Tensor, b: torch.Tensor, projections: int, repeats: int,
                     generator: torch.Generator) -> float:
    """Return the sliced Wasserstein-1 distance of two equal-size descriptor sets (M x D)."""
    results = []
    for _ in range(repeats):
        directions = torch.randn(a.shape[1], projections, generator=generator)
        directions = (directions / directions.norm(dim=0, keepdim=True)).to(a.device)
        projected_a = _sorted_rows(directions.T @ a.T)  # projections x M
        projected_b = _sorted_rows(directions.T @ b.T)
        results.append(F.l1_loss(projected_a, projected_b).item())
    return float(np.mean(results))


def sliced_wasserstein(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0,
                       descriptors_per_image: int = 128, patch: int = 7, projections: int = 128,
                       repeats: int = 4, min_resolution: int = 16) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance between two image sets (Karras et al. 2018).

    Returns {"swd/<res>": distance x 1e3 for each Laplacian level, finest first,
    "swd/mean": their mean}; lower is better, 0 for identical sets. The same seed gives the
    same values; both sets use the same patch positions. With unequal set sizes the first
    min(N_real, N_fake) images of each are used. The default 4 x 128 directions is the
    reference's; cost grows linearly with N, descriptors_per_image and projections.
    """
    _check_pair(real, fake)
    height, width = real.shape[-2:]
    smallest = max(min_resolution, patch)
    if height != width or height < smallest:
        raise DCGANError(f"SWD needs square images of at least {smallest}x{smallest} px, got "
                         f"{height}x{width}; evaluate on square images of that size or larger")
    count = min(len(real), len(fake))
    resolutions = _pyramid_resolutions(height, smallest)
    pyramids = [laplacian_pyramid(images[:count].detach().float(), len(resolutions))
                for images in (real, fake)]
    directions = torch.Generator().manual_seed(seed + 1)
    result = {}
    for resolution, real_level, fake_level in zip(resolutions, *pyramids):
        descriptors = [_normalize_descriptors(_random_patches(
            level, descriptors_per_image, patch, torch.Generator().manual_seed(seed + resolution)))
            for level in (real_level, fake_level)]
        result[f"swd/{resolution}"] = 1e3 * _sliced_distance(*descriptors, projections, repeats,
                                                            directions)
    result["swd/mean"] = float(np.mean(list(result.values())))
    return result


# --------------------------------------------------------------------------------------------
# Diversity
# --------------------------------------------------------------------------------------------

def flatten_small(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Average-pool images larger than size x size down to it; return N x D float rows."""
    images = images.detach().float()
    if images.shape[-1] > size or images.shape[-2] > size:
        images = F.adaptive_avg_pool2d(images, (min(size, images.shape[-2]),
                                                min(size, images.shape[-1])))
    return images.flatten(1)


def mean_pairwise_distance(images: torch.Tensor, *, max_pairs: int = 4096,
                           seed: int = 0) -> float:
    """Return the mean L2 distance between two distinct images of the set (at <= 32x32).

    Uses every pair when there are at most `max_pairs` of them, else `max_pairs` random
    pairs of distinct indices drawn from `seed`.
    """
    _check_images(images, "the")
    n = len(images)
    if n < 2:
        raise DCGANError(f"a pairwise distance needs at least 2 images, got {n}; "
                         "evaluate on more samples")
    rows = flatten_small(images)
    if n * (n - 1) // 2 <= max_pairs:
        return torch.pdist(rows).mean().item()
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, n, (max_pairs,), generator=generator)
    second = (first + torch.randint(1, n, (max_pairs,), generator=generator)) % n
    first, second = first.to(rows.device), second.to(rows.device)
    return (rows[first] - rows[second]).norm(dim=1).mean().item()


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor, *, max_pairs: int = 4096,
                    seed: int = 0) -> float:
    """Return mean pairwise distance of generated images / that of real images.

    About 1 when samples vary as much as the data, near 0 when they are all the same image
    (mode collapse); nan when the real images are all identical.
    """
    _check_pair(real, fake)
    spread_real = mean_pairwise_distance(real, max_pairs=max_pairs, seed=seed)
    spread_fake = mean_pairwise_distance(fake, max_pairs=max_pairs, seed=seed)
    return spread_fake / spread_real if spread_real > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Precision and recall
# --------------------------------------------------------------------------------------------

PR_NEIGHBOURS = 3  # k of the k-nearest-neighbour balls (Kynkaanniemi et al. use 3)


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st is the row itself (0)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """The share of `points` inside at least one ball (centre, radius)."""
    inside = torch.cdist(points, centres) <= radii[None, :]
    return inside.any(dim=1).float().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *,
                     k: int = PR_NEIGHBOURS) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al., 2019) of two feature sets (N x D):
    precision, the share of fakes inside the real manifold (the union of balls reaching each
    real's k-th nearest real); recall, the share of reals inside the fake manifold. Precision
    falls when G makes things the data has not, recall when G misses part of the data."""
    if min(len(real), len(fake)) <= k:
        raise DCGANError(f"precision and recall need more than k={k} images of each kind")
    real, fake = real.double(), fake.double()
    return {"precision": _covered(fake, real, _kth_neighbour_radii(real, k)),
            "recall": _covered(real, fake, _kth_neighbour_radii(fake, k))}


def pixel_precision_recall(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """Precision and recall on the images themselves, pooled to 32 x 32 (the features the
    diversity ratio uses): no network or download needed."""
    _check_pair(real, fake)
    return precision_recall(flatten_small(real), flatten_small(fake))


# --------------------------------------------------------------------------------------------
# FID and KID
# --------------------------------------------------------------------------------------------

def _cached_inception_paths() -> list[Path]:
    """Return where torch hub keeps the weights: our file name first, torch-fidelity's second."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / INCEPTION_FILE, checkpoints / INCEPTION_FILE_TORCH_FIDELITY]


def _how_to_get_weights() -> str:
    """Return the one-line instruction for putting the Inception weights in place."""
    return (f"download {INCEPTION_URL} and pass eval.inception_weights=PATH or save it as "
            f"{_cached_inception_paths()[0]}")


def inception_weights_path(inception_weights: str | Path | None = None) -> Path:
    """Return the FID Inception weights file to use; raise InceptionUnavailable if absent."""
    if inception_weights is not None:
        path = Path(inception_weights).expanduser()
        if path.is_file():
            return path
        raise InceptionUnavailable(f"the FID Inception weights file {INCEPTION_FILE} is not at "
                                   f"{path}; {_how_to_get_weights()}")
    for path in _cached_inception_paths():
        if path.is_file():
            return path
    raise InceptionUnavailable(f"FID/KID need the Inception weights file {INCEPTION_FILE}, "
                               f"which is not in the torch hub cache; {_how_to_get_weights()}")


def inception_available(inception_weights: str | Path | None = None) -> bool:
    """Return True when the FID Inception weights file can be found (nothing is loaded)."""
    try:
        inception_weights_path(inception_weights)
    except InceptionUnavailable:
        return False
    return True


def load_inception(inception_weights: str | Path | None = None) -> nn.Module:
    """Return torchmetrics' InceptionV3 (2048-d pool features, uint8 N x 3 x H x W input)."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = inception_weights_path(inception_weights)
    try:
        # Check the file loads safely before torch-fidelity loads it with weights_only=False.
        torch.load(path, map_location="cpu", weights_only=True)
        # antialias=False: torch-fidelity's TF1-compatible resize to 299, as published FIDs use.
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path), antialias=False)
    except Exception as error:
        raise InceptionUnavailable(f"{path} is not a readable FID Inception weights file "
                                   f"({type(error).__name__}); {_how_to_get_weights()}") from error


def images_to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] with 3 channels (grayscale repeated), same device."""
    uint8 = to_uint8(images)
    return uint8.expand(-1, 3, -1, -1) if uint8.shape[1] == 1 else uint8


def _module_device(module: nn.Module, default: torch.device) -> torch.device:
    """Return the device of the module's first parameter or buffer, else `default`."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return default


@torch.no_grad()
def extract_features(images: torch.Tensor, extractor: nn.Module,
                     batch_size: int = 200) -> torch.Tensor:
    """Return the extractor's features of the images as an N x d float64 CPU tensor."""
    device = _module_device(extractor, images.device)
    batches = [extractor(images_to_uint8_rgb(chunk).to(device)).reshape(len(chunk), -1)
               for chunk in images.split(batch_size)]
    return torch.cat(batches).double().cpu()


class _Precomputed(nn.Identity):
    """A torchmetrics `feature` module for features extracted already (so each image set
    goes through the network once for both FID and KID)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Return torchmetrics' FID between two N x d feature sets (float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return metric.compute().item()


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, *, subset_size: int = 100,
                      subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """Return torchmetrics' KID (mean, std over random subsets) between two feature sets.

    The subset size is capped at the smaller set; subsets are drawn from `seed`.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets,
                                         subset_size=min(subset_size, len(real), len(fake)))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws subsets from the global generator
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return mean.item(), std.item()


def fid_kid(real: torch.Tensor, fake: torch.Tensor, *, feature_extractor: nn.Module | None = None,
            inception_weights: str | Path | None = None, kid_subset_size: int = 100,
            seed: int = 0, device: torch.device | str | None = None,
            real_features: torch.Tensor | None = None) -> dict[str, float]:
    """Return {"fid", "kid", "kid_std", "inception_precision", "inception_recall"} between real
    and generated images.

    Features come from `feature_extractor` (a module taking uint8 N x 3 x H x W) when given,
    else from the FID InceptionV3 loaded from `inception_weights` or the torch hub cache,
    never downloaded: a missing file raises InceptionUnavailable before the images are
    looked at. Inception runs on `device` (default: the real images' device). KID uses
    100 subsets of min(kid_subset_size, N) images drawn from `seed`. `real_features`, when
    given, are the real images' features computed earlier by the same extractor (an
    evaluator's cache): the real images are then not run through it again.
    """
    if feature_extractor is None:
        inception_weights_path(inception_weights)  # fail fast, before any work
    _check_pair(real, fake)
    if len(real) < 2 or len(fake) < 2:
        raise DCGANError("FID/KID need at least 2 real and 2 generated images; "
                         "evaluate on more samples")
    extractor = feature_extractor
    if extractor is None:
        extractor = load_inception(inception_weights).to(device or real.device)
    features_real = (extract_features(real, extractor) if real_features is None
                     else real_features.double().cpu())
    features_fake = extract_features(fake, extractor)
    kid, kid_std = kid_from_features(features_real, features_fake,
                                     subset_size=kid_subset_size, seed=seed)
    manifold = precision_recall(features_real, features_fake)
    return {"fid": fid_from_features(features_real, features_fake), "kid": kid,
            "kid_std": kid_std, "inception_precision": manifold["precision"],
            "inception_recall": manifold["recall"]}


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------

def compute_metrics(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0, fid: bool = False,
                    inception_weights: str | Path | None = None,
                    feature_extractor: nn.Module | None = None,
                    device: torch.device | str | None = None,
                    real_features: torch.Tensor | None = None) -> dict[str, float]:
    """Return SWD ("swd/<res>", "swd/mean"), "diversity", "precision"/"recall" (on pixels) and,
    if `fid`, "fid"/"kid"/"kid_std" and "inception_precision"/"inception_recall".

    `device` is where Inception runs (default: the images' device); SWD and diversity run
    where the images are; `real_features` as in fid_kid.
    """
    if fid and feature_extractor is None:
        inception_weights_path(inception_weights)  # fail fast, before the SWD work
    metrics = sliced_wasserstein(real, fake, seed=seed)
    metrics["diversity"] = diversity_ratio(fake, real, seed=seed)
    metrics.update(pixel_precision_recall(real, fake))
    if fid:
        metrics.update(fid_kid(real, fake, feature_extractor=feature_extractor,
                               inception_weights=inception_weights, seed=seed, device=device,
                               real_features=real_features))
    return metrics
