"""Data sets as the trainer sees them: float images in [-1, 1], C x S x S each.

`build_dataset` turns the `dataset` section of the config into one of
  mnist10k  the 10,000 MNIST test digits shipped inside the package (offline, 1 channel)
  digits    scikit-learn's bundled 8x8 handwritten digits, upscaled (offline, 1 channel)
  mnist     the original IDX files, gzipped or not (1 channel)
  celeba  aligned CelebA JPEGs, centre crop 178 then resize (3 channels)
  folder  any tree of image files, resize + centre crop (1 or 3 channels)
  fake    random images, no I/O
`DATASETS` is the registry of what each one is: its splits, whether its images fix the channel
count, whether it needs `dataset.root`, and how it is built. Config validation reads it, so a
new data set is one entry here. Batching lives in dcgan.data.loader.
"""

from __future__ import annotations

import gzip
import importlib.resources
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset

from dcgan.data.cache import cached_dataset
from dcgan.errors import DCGANError
from dcgan.files.images import to_signed_unit

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CELEBA_CROP = 178  # the aligned faces are 178 x 218; the DCGAN recipe keeps the central square
CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}
MNIST_URL_HELP = "https://ossci-datasets.s3.amazonaws.com/mnist/ (or yann.lecun.com/exdb/mnist)"
# The MNIST test images, unchanged, inside the package (CC BY-SA 3.0; bundled/NOTICE.md).
BUNDLED_MNIST = "t10k-images-idx3-ubyte.gz"
CELEBA_URL_HELP = (
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_align_celeba.zip, or the Kaggle "
    "mirror 'jessicali9530/celeba-dataset')"
)


# ---------------------------------------------------------------------------------------------
# In-memory data sets (digits, mnist, fake)


class TensorImages(Dataset):
    """Images already decoded into one uint8 tensor N x C x S x S."""

    def __init__(self, images_uint8: torch.Tensor):
        self.images = images_uint8

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_signed_unit(self.images[index])

    def decoded(self) -> torch.Tensor:
        """All the images, uint8 (for the device feed, dcgan.data.loader.DeviceFeed)."""
        return self.images

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch in one indexing operation: the DataLoader calls this instead of
        __getitem__ per image (the same images, without a Python call per image)."""
        return to_signed_unit(self.images[torch.as_tensor(indices)])


class FakeImages(Dataset):
    """Random images in [-1, 1], each a pure function of its index (no global RNG, no I/O)."""

    def __init__(self, size: int, channels: int, image_size: int):
        self.size, self.shape = size, (channels, image_size, image_size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(index)
        return torch.rand(self.shape, generator=generator).mul_(2).sub_(1)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize N x C x h x w uint8 images to size x size (bilinear, antialiased), in chunks."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        resized = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_digits_images(image_size: int) -> torch.Tensor:
    """scikit-learn's 1,797 bundled 8x8 digits (values 0..16) as uint8 N x 1 x S x S."""
    from sklearn.datasets import load_digits

    pixels = torch.from_numpy(load_digits().images).float() * (255.0 / 16.0)
    return resize_uint8(pixels.round().to(torch.uint8)[:, None], image_size)


def read_idx_images(path: Path) -> torch.Tensor:
    """Read an IDX3 image file (gzipped or not) as uint8 N x 28 x 28."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DCGANError(f"cannot read MNIST file {path}: {error}") from error
    if len(data) < 16:
        raise DCGANError(f"{path} is not an IDX image file (only {len(data)} bytes)")
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 2051:
        raise DCGANError(f"{path} is not an IDX image file (magic number {magic}, expected 2051)")
    expected = 16 + count * rows * cols
    if len(data) < expected:
        raise DCGANError(f"{path} is truncated: {len(data)} bytes, expected {expected}")
    pixels = np.frombuffer(data, dtype=np.uint8, count=count * rows * cols, offset=16)
    return torch.from_numpy(pixels.reshape(count, rows, cols).copy())


def find_mnist_images(root: Path, split: str) -> Optional[Path]:
    """The IDX image file for a split, in root or in torchvision's root/MNIST/raw layout."""
    prefix = "train" if split == "train" else "t10k"
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte",
                     f"{prefix}-images.idx3-ubyte"):
            if (folder / name).is_file():
                return folder / name
    return None


def download_mnist(root: Path, split: str) -> None:
    """Fetch MNIST through torchvision's mirrors into root/MNIST/raw."""
    from torchvision.datasets import MNIST

    log.info("downloading MNIST into %s", root / "MNIST" / "raw")
    try:
        MNIST(root=str(root), train=(split == "train"), download=True)
    except Exception as error:  # network errors come in many types; all mean the same here
        raise DCGANError(
            f"could not download MNIST into {root} ({type(error).__name__}: {error}); "
            f"download the IDX files from {MNIST_URL_HELP} and put them in {root}"
        ) from error


def load_mnist_images(ds: DictConfig) -> torch.Tensor:
    root = Path(ds.root).expanduser()
    path = find_mnist_images(root, ds.split)
    if path is None and ds.download:
        download_mnist(root, ds.split)
        path = find_mnist_images(root, ds.split)
    if path is None:
        prefix = "train" if ds.split == "train" else "t10k"
        raise DCGANError(
            f"MNIST split '{ds.split}' not found: expected {prefix}-images-idx3-ubyte.gz (or "
            f"unzipped) in {root.resolve()}; get it from {MNIST_URL_HELP}, or add "
            "dataset.download=true"
        )
    return mnist_tensor(read_idx_images(path), ds, str(path))


def load_bundled_mnist(ds: DictConfig) -> torch.Tensor:
    """The MNIST test digits shipped in dcgan/bundled: the offline default."""
    with importlib.resources.as_file(
        importlib.resources.files("dcgan.data") / "bundled" / BUNDLED_MNIST
    ) as path:
        return mnist_tensor(read_idx_images(path), ds, "the bundled MNIST test set")


def mnist_tensor(images: torch.Tensor, ds: DictConfig, source: str) -> torch.Tensor:
    """N x 28 x 28 uint8 digits -> the first dataset.limit of them, N x 1 x S x S."""
    if ds.limit is not None:
        images = images[: ds.limit]
    log.info("MNIST %s: %d images from %s", ds.split, images.shape[0], source)
    return resize_uint8(images[:, None], ds.image_size)


# ---------------------------------------------------------------------------------------------
# Image files on disk (celeba, folder)


class ImageFiles(Dataset):
    """Decode, crop and resize image files one at a time.

    An unreadable file yields (None, path) instead of raising inside a worker;
    `collate_images` drops it and reports its path, and the trainer applies
    `dataset.on_bad_image` (skip or error).
    """

    decodes_files = True  # worth DataLoader workers (dcgan.data.loader.default_workers)

    def __init__(self, paths: Sequence[Path], image_size: int, channels: int, celeba: bool):
        self.paths = list(paths)
        self.image_size, self.celeba = image_size, celeba
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """The image at `index` as float C x S x S in [-1, 1]; raises OSError if unreadable."""
        with Image.open(self.paths[index]) as image:
            image = image.convert(self.mode)
            if self.celeba:
                square = resize(centre_crop(image, CELEBA_CROP), self.image_size)
            else:
                square = centre_crop(resize(image, self.image_size), self.image_size)
        pixels = torch.from_numpy(np.array(square, dtype=np.uint8, copy=True))
        pixels = pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        return to_signed_unit(pixels)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[None, str]:
        try:
            return self.load(index)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return (None, str(self.paths[index]))


def centre_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size square (as torchvision's CenterCrop rounds it)."""
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def resize(image: Image.Image, size: int) -> Image.Image:
    """Shrink (or grow) so the shorter side is `size`; bilinear with antialiasing (Pillow)."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image if new == image.size else image.resize(new, Image.BILINEAR)


def list_images(folder: Path) -> list[Path]:
    """Every image file under folder (recursively), sorted by path."""
    return sorted(
        path for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )


def _require_folder(folder: Path, what: str, help_text: str) -> None:
    if not folder.exists():
        raise DCGANError(f"{what} folder {folder} does not exist; {help_text}")
    if not folder.is_dir():
        raise DCGANError(f"{what} path {folder} is not a folder; {help_text}")


def celeba_paths(ds: DictConfig) -> list[Path]:
    root = Path(ds.root).expanduser()
    help_text = (f"download img_align_celeba from {CELEBA_URL_HELP} and unpack it so the "
                 f"JPEGs are in {root / 'img_align_celeba'}, or point dataset.root at them")
    _require_folder(root, "CelebA", help_text)
    image_dir = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise DCGANError(f"no CelebA images (.jpg) in {image_dir}; {help_text}")
    if ds.split != "all":
        paths = _filter_partition(paths, root, image_dir, ds.split)
    return paths


def _filter_partition(paths: list[Path], root: Path, image_dir: Path, split: str) -> list[Path]:
    candidates = [root / "list_eval_partition.txt", image_dir.parent / "list_eval_partition.txt"]
    partition_file = next((p for p in candidates if p.is_file()), None)
    if partition_file is None:
        raise DCGANError(f"dataset.split={split} needs list_eval_partition.txt in {root}; "
                         "put it there or use dataset.split=all")
    wanted = str(CELEBA_SPLITS[split])
    in_split = set()
    for line in partition_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == wanted:
            in_split.add(parts[0])
    chosen = [p for p in paths if p.name in in_split]
    if not chosen:
        raise DCGANError(f"no images of split '{split}' (per {partition_file}) in {image_dir}")
    return chosen


def folder_paths(ds: DictConfig) -> list[Path]:
    root = Path(ds.root).expanduser()
    help_text = "point dataset.root at a folder of images"
    _require_folder(root, "image", help_text)
    paths = list_images(root)
    if not paths:
        raise DCGANError(f"no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} "
                         "files, recursively); " + help_text)
    return paths


# ---------------------------------------------------------------------------------------------
# The registry


def _digits(ds: DictConfig) -> Dataset:
    images = load_digits_images(ds.image_size)
    return TensorImages(images[: ds.limit] if ds.limit is not None else images)


def _fake(ds: DictConfig) -> Dataset:
    size = min(ds.size, ds.limit) if ds.limit is not None else ds.size
    return FakeImages(size, ds.channels, ds.image_size)


def _image_files(ds: DictConfig) -> Dataset:
    celeba = ds.name == "celeba"
    paths = celeba_paths(ds) if celeba else folder_paths(ds)
    if ds.limit is not None:
        paths = paths[: ds.limit]
    log.info("%s: %d image files", ds.name, len(paths))
    files = ImageFiles(paths, ds.image_size, ds.channels, celeba)
    return cached_dataset(ds, files) if ds.cache else files


@dataclass(frozen=True)
class DatasetKind:
    """What is fixed about one kind of data set, whatever the config says."""

    splits: tuple[str, ...]
    channels: Optional[int]  # fixed by the images; None: chosen with dataset.channels (1 or 3)
    needs_root: bool  # reads files under dataset.root
    build: Callable[[DictConfig], Dataset]
    cacheable: bool = False  # decoded once by dcgan-prepare into the cache


DATASETS: dict[str, DatasetKind] = {
    "mnist10k": DatasetKind(("test",), 1, False, lambda ds: TensorImages(load_bundled_mnist(ds))),
    "digits": DatasetKind(("all",), 1, False, _digits),
    "mnist": DatasetKind(("train", "test"), 1, True, lambda ds: TensorImages(load_mnist_images(ds))),
    "celeba": DatasetKind(("all", "train", "val", "test"), 3, True, _image_files, cacheable=True),
    "folder": DatasetKind(("all",), None, True, _image_files, cacheable=True),
    "fake": DatasetKind(("all",), None, False, _fake),
}


def build_dataset(ds: DictConfig) -> Dataset:
    """The data set the config names. Raises DCGANError for missing or empty data."""
    if ds.name not in DATASETS:
        raise DCGANError(f"unknown dataset {ds.name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[ds.name].build(ds)
