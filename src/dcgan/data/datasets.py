"""Data sets as the trainer sees them: float images in [-1, 1], C x S x S each.

`build_dataset` turns the `dataset` section of the config into one of
  mnist10k  the 10,000 MNIST test digits shipped inside the package (offline, 1 channel)
  digits    scikit-learn's bundled 8x8 handwritten digits, upscaled (offline, 1 channel)
  mnist     the original IDX files, gzipped or not (1 channel)
  celeba    aligned CelebA JPEGs, centre crop 178 then resize (3 channels)
  cifar10   CIFAR-10: torchvision's python batches or a folder per class (3 channels, 32x32)
  folder    any tree of image files, resize + centre crop (1 or 3 channels)
  fake      random images, no I/O
`DATASETS` is the registry of what each one is: its splits, whether its images fix the channel
count, whether it needs `dataset.root`, which labels it has, and how it is built. Config
validation reads it, so a new data set is one entry here. Asked for labels
(`build_dataset(ds, labels="class" | "attributes")`), a data set carries them beside the same
images (dcgan.data.labels). Batching lives in dcgan.data.loader.
"""

from __future__ import annotations

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

from dcgan.data import cifar10
from dcgan.data.cache import cached_dataset
from dcgan.data.labels import (
    DIGIT_NAMES,
    LABEL_KINDS,
    NO_LABELS,
    LabelRequest,
    Labels,
    celeba_attributes,
    class_labels,
    folder_classes,
    read_idx_bytes,
    read_idx_labels,
    require_same_count,
)
from dcgan.errors import DCGANError
from dcgan.files.images import to_signed_unit

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CELEBA_CROP = 178  # the aligned faces are 178 x 218; the DCGAN recipe keeps the central square
CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}
MNIST_URL_HELP = "https://ossci-datasets.s3.amazonaws.com/mnist/ (or yann.lecun.com/exdb/mnist)"
# The MNIST test images and labels, unchanged, inside the package (CC BY-SA 3.0; bundled/NOTICE.md).
BUNDLED_MNIST = "t10k-images-idx3-ubyte.gz"
BUNDLED_MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
CELEBA_URL_HELP = (
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_align_celeba.zip, or the Kaggle "
    "mirror 'jessicali9530/celeba-dataset')"
)


# ---------------------------------------------------------------------------------------------
# In-memory data sets (digits, mnist, cifar10's batches, fake)


class TensorImages(Dataset):
    """Images already decoded into one uint8 tensor N x C x S x S (labels: when asked for)."""

    def __init__(self, images_uint8: torch.Tensor, labels: Optional[Labels] = None):
        self.images = images_uint8
        self.labels = labels

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
    data = read_idx_bytes(path, "MNIST file")
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


def find_mnist_file(root: Path, split: str, what: str = "images") -> Optional[Path]:
    """The IDX file of a split's images or labels, in root or in torchvision's root/MNIST/raw."""
    prefix = "train" if split == "train" else "t10k"
    idx = "idx3" if what == "images" else "idx1"
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (f"{prefix}-{what}-{idx}-ubyte.gz", f"{prefix}-{what}-{idx}-ubyte",
                     f"{prefix}-{what}.{idx}-ubyte"):
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


def find_or_fetch_mnist(ds: DictConfig, what: str) -> Path:
    root = Path(ds.root).expanduser()
    path = find_mnist_file(root, ds.split, what)
    if path is None and ds.download:
        download_mnist(root, ds.split)
        path = find_mnist_file(root, ds.split, what)
    if path is None:
        prefix = "train" if ds.split == "train" else "t10k"
        idx = "idx3" if what == "images" else "idx1"
        found = "MNIST split" if what == "images" else "MNIST labels of split"
        raise DCGANError(
            f"{found} '{ds.split}' not found: expected {prefix}-{what}-{idx}-ubyte.gz (or "
            f"unzipped) in {root.resolve()}; get it from {MNIST_URL_HELP}, or add "
            "dataset.download=true"
        )
    return path


def _mnist(ds: DictConfig, request: LabelRequest) -> Dataset:
    path = find_or_fetch_mnist(ds, "images")
    images = read_idx_images(path)
    labels = None
    if request.wanted:
        label_path = find_or_fetch_mnist(ds, "labels")
        labels = mnist_labels(read_idx_labels(label_path), images, str(label_path))
    return mnist_dataset(images, labels, ds, str(path))


def _mnist10k(ds: DictConfig, request: LabelRequest) -> Dataset:
    """The MNIST test digits shipped in dcgan/bundled: the offline default."""
    bundled = importlib.resources.files("dcgan.data") / "bundled"
    with importlib.resources.as_file(bundled / BUNDLED_MNIST) as path:
        images = read_idx_images(path)
    labels = None
    if request.wanted:
        with importlib.resources.as_file(bundled / BUNDLED_MNIST_LABELS) as path:
            labels = mnist_labels(read_idx_labels(path), images, "the bundled MNIST labels")
    return mnist_dataset(images, labels, ds, "the bundled MNIST test set")


def mnist_labels(ids: torch.Tensor, images: torch.Tensor, source: str) -> Labels:
    require_same_count(ids.numel(), images.shape[0], source)
    return class_labels(ids, DIGIT_NAMES)


def mnist_dataset(images: torch.Tensor, labels: Optional[Labels], ds: DictConfig,
                  source: str) -> TensorImages:
    """N x 28 x 28 uint8 digits -> the first dataset.limit of them, N x 1 x S x S."""
    if ds.limit is not None:
        images = images[: ds.limit]
        labels = labels.take(slice(0, ds.limit)) if labels is not None else None
    log.info("MNIST %s: %d images from %s", ds.split, images.shape[0], source)
    return TensorImages(resize_uint8(images[:, None], ds.image_size), labels)


# ---------------------------------------------------------------------------------------------
# Image files on disk (celeba, folder)


class ImageFiles(Dataset):
    """Decode, crop and resize image files one at a time.

    An unreadable file yields (None, path) instead of raising inside a worker;
    `collate_images` drops it and reports its path, and the trainer applies
    `dataset.on_bad_image` (skip or error).
    """

    decodes_files = True  # worth DataLoader workers (dcgan.data.loader.default_workers)

    def __init__(self, paths: Sequence[Path], image_size: int, channels: int, celeba: bool,
                 labels: Optional[Labels] = None):
        self.paths = list(paths)
        self.image_size, self.celeba = image_size, celeba
        self.mode = "L" if channels == 1 else "RGB"
        self.labels = labels

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


def _digits(ds: DictConfig, request: LabelRequest) -> Dataset:
    images = load_digits_images(ds.image_size)
    labels = digits_labels() if request.wanted else None
    if ds.limit is not None:
        images = images[: ds.limit]
        labels = labels.take(slice(0, ds.limit)) if labels is not None else None
    return TensorImages(images, labels)


def digits_labels() -> Labels:
    from sklearn.datasets import load_digits

    return class_labels(torch.from_numpy(load_digits().target), DIGIT_NAMES)


def _fake(ds: DictConfig, request: LabelRequest) -> Dataset:
    size = min(ds.size, ds.limit) if ds.limit is not None else ds.size
    return FakeImages(size, ds.channels, ds.image_size)


def _celeba(ds: DictConfig, request: LabelRequest) -> Dataset:
    paths, labels, variant = celeba_paths(ds), None, ""
    if request.wanted:
        root = Path(ds.root).expanduser()
        image_dir = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
        folders = list(dict.fromkeys([root, image_dir.parent]))
        with_rows, labels = celeba_attributes(paths, folders, request.attributes)
        # a cache of only the faces with attributes must not replace the one of all the faces
        paths, variant = with_rows, ("attributes" if len(with_rows) < len(paths) else "")
    return image_file_dataset(ds, paths, labels, celeba=True, cache_variant=variant)


def _folder(ds: DictConfig, request: LabelRequest) -> Dataset:
    paths = folder_paths(ds)
    labels = folder_classes(paths, Path(ds.root).expanduser()) if request.wanted else None
    return image_file_dataset(ds, paths, labels, celeba=False)


def _cifar10(ds: DictConfig, request: LabelRequest) -> Dataset:
    root = Path(ds.root).expanduser()
    help_text = (f"put torchvision's {cifar10.BATCHES_FOLDER}/ there (from "
                 f"{cifar10.CIFAR10_URL_HELP}), or one folder of images per class "
                 f"({', '.join(cifar10.CIFAR10_CLASSES)})")
    _require_folder(root, "CIFAR-10", help_text)
    batches = cifar10.find_batches(root)
    if batches is not None:
        images, labels = cifar10.read_batches(batches, ds.split, request.wanted)
        if ds.limit is not None:
            images = images[: ds.limit]
            labels = labels.take(slice(0, ds.limit)) if labels is not None else None
        if ds.cache:
            log.info("cifar10: the python batches are read into memory; dataset.cache is not "
                     "needed for them")
        log.info("cifar10 %s: %d images from %s", ds.split, images.shape[0], batches)
        if images.shape[-1] != ds.image_size:
            images = resize_uint8(images, ds.image_size)
        return TensorImages(images, labels)
    tree = cifar10.find_class_tree(root, ds.split)
    if tree is None:
        raise DCGANError(f"no CIFAR-10 in {root}; {help_text}")
    paths = list_images(tree)
    if not paths:
        raise DCGANError(f"no images in {tree}; {help_text}")
    labels = None
    if request.wanted:
        labels = folder_classes(paths, tree)
        cifar10.require_cifar_classes(labels, tree)
    return image_file_dataset(ds, paths, labels, celeba=False)


def image_file_dataset(ds: DictConfig, paths: list[Path], labels: Optional[Labels], celeba: bool,
                       cache_variant: str = "") -> Dataset:
    """The first dataset.limit of these files (and their labels), or their decoded cache."""
    if ds.limit is not None:
        paths = paths[: ds.limit]
        labels = labels.take(slice(0, ds.limit)) if labels is not None else None
    log.info("%s: %d image files", ds.name, len(paths))
    files = ImageFiles(paths, ds.image_size, ds.channels, celeba, labels)
    if not ds.cache:
        return files
    cached = cached_dataset(ds, files, cache_variant)
    if labels is not None:
        indices = cached.source_indices
        cached.labels = labels if indices is None else labels.take(indices)
    return cached


@dataclass(frozen=True)
class DatasetKind:
    """What is fixed about one kind of data set, whatever the config says."""

    splits: tuple[str, ...]
    channels: Optional[int]  # fixed by the images; None: chosen with dataset.channels (1 or 3)
    needs_root: bool  # reads files under dataset.root
    build: Callable[[DictConfig, LabelRequest], Dataset]
    cacheable: bool = False  # decoded once by dcgan-prepare into the cache
    labels: tuple[str, ...] = ()  # the kinds of labels it has: class, attributes


DATASETS: dict[str, DatasetKind] = {
    "mnist10k": DatasetKind(("test",), 1, False, _mnist10k, labels=("class",)),
    "digits": DatasetKind(("all",), 1, False, _digits, labels=("class",)),
    "mnist": DatasetKind(("train", "test"), 1, True, _mnist, labels=("class",)),
    "celeba": DatasetKind(("all", "train", "val", "test"), 3, True, _celeba, cacheable=True,
                          labels=("attributes",)),
    "cifar10": DatasetKind(("train", "test"), 3, True, _cifar10, cacheable=True,
                           labels=("class",)),
    "folder": DatasetKind(("all",), None, True, _folder, cacheable=True, labels=("class",)),
    "fake": DatasetKind(("all",), None, False, _fake),
}


def build_dataset(ds: DictConfig, labels: str = "none",
                  attributes: Optional[Sequence[str]] = None) -> Dataset:
    """The data set the config names; with `labels` ("class" or "attributes") it also carries
    them (dcgan.data.labels.labels_of), and `attributes` picks CelebA's attributes by name (in
    that order; None: all 40). Raises DCGANError for missing or empty data or labels."""
    if ds.name not in DATASETS:
        raise DCGANError(f"unknown dataset {ds.name!r}; choose one of {', '.join(DATASETS)}")
    kind = DATASETS[ds.name]
    return kind.build(ds, label_request(ds.name, kind, labels, attributes))


def label_request(name: str, kind: DatasetKind, labels: str,
                  attributes: Optional[Sequence[str]]) -> LabelRequest:
    if labels not in LABEL_KINDS:
        raise DCGANError(f"unknown kind of labels {labels!r}; choose one of "
                         f"{', '.join(LABEL_KINDS)}")
    if labels == "none":
        if attributes is not None:
            raise DCGANError("attribute names pick among attributes: ask for labels='attributes'")
        return NO_LABELS
    if labels not in kind.labels:
        offered = (f"it has {' and '.join(kind.labels)} labels" if kind.labels
                   else "it has no labels")
        with_kind = ", ".join(n for n, k in DATASETS.items() if labels in k.labels)
        raise DCGANError(f"dataset={name} has no {labels} labels ({offered}); {labels} labels "
                         f"come with {with_kind}")
    if attributes is not None and labels != "attributes":
        raise DCGANError(f"attribute names are for attributes labels, not {labels} labels")
    return LabelRequest(labels, tuple(attributes) if attributes is not None else None)
