"""CIFAR-10 on disk, in either of its two common layouts under `dataset.root`:

  cifar-10-batches-py/ (or root itself)  torchvision's python batches: data_batch_1..5 (train),
      test_batch (test) and batches.meta, each a pickled dict holding a uint8 array [N, 3072]
      and a list of labels. They are read by `NumpyOnlyUnpickler`, which rebuilds numpy arrays
      and built-in values and refuses every other object a file may name, so a file that is
      not what it claims cannot run code while it is read.
  root/<split>/<class>/ or root/<class>/  a tree of image files, one folder per class
      (airplane .. truck), read as dataset=folder reads files; a root that holds the class
      folders itself is one split, whatever dataset.split says.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dcgan.data.labels import Labels, class_labels, require_same_count
from dcgan.errors import DCGANError

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
BATCHES_FOLDER = "cifar-10-batches-py"
SPLIT_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META_FILE = "batches.meta"
CIFAR10_URL_HELP = ("https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz, "
                    "unpacked into dataset.root)")


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What a pickled numpy array names, under numpy 1.x's and 2.x's module names."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct (protocols 0-4)
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy's _frombuffer (protocol 5)
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol 2
    }


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles built-in values and numpy arrays; any other class or function is refused."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        found = self.allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays "
                                         "and built-in values are read)")
        return found


def read_pickled_dict(path: Path) -> dict[str, object]:
    """A CIFAR python batch (or batches.meta) as a dict with str keys."""
    try:
        with open(path, "rb") as handle:
            # latin1: the batches were written by Python 2, whose str holds the array's bytes
            content = NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except OSError as error:
        raise DCGANError(f"cannot read CIFAR-10 file {path}: {error}") from error
    except Exception as error:  # a damaged or foreign pickle fails in many ways; all mean this
        raise DCGANError(f"{path} is not a CIFAR-10 python batch ({type(error).__name__}: "
                         f"{error}); get cifar-10-python.tar.gz from {CIFAR10_URL_HELP}") from error
    if not isinstance(content, dict):
        raise DCGANError(f"{path} is not a CIFAR-10 python batch (it holds a "
                         f"{type(content).__name__}, not a dict)")
    return {key.decode("latin1") if isinstance(key, bytes) else str(key): value
            for key, value in content.items()}


def find_batches(root: Path) -> Optional[Path]:
    """The folder of the python batches (root/cifar-10-batches-py or root), if there is one."""
    names = (*SPLIT_BATCHES["train"], *SPLIT_BATCHES["test"], META_FILE)
    for folder in (root / BATCHES_FOLDER, root):
        if any((folder / name).is_file() for name in names):
            return folder
    return None


def read_batches(folder: Path, split: str, with_labels: bool
                 ) -> tuple[torch.Tensor, Optional[Labels]]:
    """The split's images as uint8 N x 3 x 32 x 32 and, if asked, their class labels."""
    missing = [name for name in SPLIT_BATCHES[split] if not (folder / name).is_file()]
    if missing:
        raise DCGANError(f"CIFAR-10 split '{split}' needs {', '.join(missing)} in {folder}; get "
                         f"cifar-10-python.tar.gz from {CIFAR10_URL_HELP}")
    images, labels = [], []
    for name in SPLIT_BATCHES[split]:
        batch = read_pickled_dict(folder / name)
        data = batch.get("data")
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3 * 32 * 32):
            raise DCGANError(f"{folder / name} holds no uint8 'data' array of N x 3072 pixels; "
                             f"get cifar-10-python.tar.gz from {CIFAR10_URL_HELP}")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        if with_labels:
            labels.append(_batch_labels(batch, folder / name, data.shape[0]))
    pixels = torch.cat(images)
    if not with_labels:
        return pixels, None
    return pixels, class_labels(torch.cat(labels), class_names(folder))


def _batch_labels(batch: dict, path: Path, n_images: int) -> torch.Tensor:
    values = batch.get("labels")
    if values is None:
        raise DCGANError(f"{path} holds no 'labels'; get cifar-10-python.tar.gz from "
                         f"{CIFAR10_URL_HELP}")
    try:
        ids = torch.as_tensor(np.asarray(values, dtype=np.int64))
    except (TypeError, ValueError) as error:
        raise DCGANError(f"{path}: its labels are not class numbers ({error})") from error
    require_same_count(ids.numel(), n_images, str(path))
    if ids.numel() and (ids.min() < 0 or ids.max() >= len(CIFAR10_CLASSES)):
        raise DCGANError(f"{path} holds label {int(ids.max())}; CIFAR-10's are 0-9")
    return ids.reshape(-1)


def class_names(folder: Path) -> tuple[str, ...]:
    """The names in batches.meta (CIFAR-10's ten when the file is absent)."""
    if not (folder / META_FILE).is_file():
        return CIFAR10_CLASSES
    names = read_pickled_dict(folder / META_FILE).get("label_names")
    if not (isinstance(names, list) and len(names) == len(CIFAR10_CLASSES)
            and all(isinstance(name, str) for name in names)):
        raise DCGANError(f"{folder / META_FILE} holds no list of ten 'label_names'; get "
                         f"cifar-10-python.tar.gz from {CIFAR10_URL_HELP}")
    return tuple(names)


def find_class_tree(root: Path, split: str) -> Optional[Path]:
    """root/<split> when it is a folder, else root when it holds class folders itself."""
    if (root / split).is_dir():
        return root / split
    if any((root / name).is_dir() for name in CIFAR10_CLASSES):
        log.info("cifar10: %s holds the class folders itself (no %s/ folder): reading them as "
                 "they are", root, split)
        return root
    return None


def require_cifar_classes(labels: Labels, tree: Path) -> None:
    if labels.names != CIFAR10_CLASSES:
        raise DCGANError(f"{tree} has class folders {', '.join(labels.names)}; CIFAR-10's are "
                         f"{', '.join(CIFAR10_CLASSES)} (for other classes use dataset=folder)")
