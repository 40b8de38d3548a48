"""Labels read from the data, aligned with the images a data set yields.

A data set carries labels when it is built asking for them; the images it yields do not change:

    dataset = build_dataset(cfg.dataset, labels="class")  # mnist10k, mnist, digits, cifar10, folder
    dataset = build_dataset(cfg.dataset, labels="attributes", attributes=["Smiling", "Male"])
    labels = labels_of(dataset)                             # a Labels record

`labels.values[i]` belongs to `dataset[i]`, in the data set's order after split, limit and the
cache (an image the cache could not decode takes its label with it). For `kind == "class"`,
`values` is a LongTensor [N] of ids into `names`, the class names (digits "0".."9"; for
folders the sub-folder names, sorted, as torchvision's ImageFolder numbers them). For
`kind == "attributes"` (CelebA), `values` is a float tensor [N, K] of 0/1 and `names` the K
attribute names in column order (all 40 unless a subset is asked for).

Building with `labels="none"` (the default) reads no label file and gives exactly the data
set it always gave. Asking for CelebA's attributes keeps only the faces the attribute file
has rows for (all of them with the full `list_attr_celeba.txt`). Anything that makes labels
impossible (no label file, a label count that differs from the images, a folder of one class
or with images outside class folders, an unknown attribute) is a DCGANError.
"""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dcgan.errors import DCGANError

log = logging.getLogger(__name__)

LABEL_KINDS = ("none", "class", "attributes")
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
CELEBA_ATTRIBUTE_FILE = "list_attr_celeba.txt"
CELEBA_PARTIAL_ATTRIBUTES = "list_attr_celeba.partial*.txt"  # rows for only some faces


@dataclass(frozen=True)
class Labels:
    """One label per image: class ids [N] (long) or attributes [N, K] (float 0/1)."""

    kind: str  # "class" | "attributes"
    values: torch.Tensor
    names: tuple[str, ...]  # class names by id, or attribute names by column

    def __len__(self) -> int:
        return self.values.shape[0]

    def take(self, indices: Sequence[int] | slice) -> Labels:
        """The labels of these images, in this order."""
        if not isinstance(indices, slice):
            indices = torch.as_tensor(list(indices), dtype=torch.long)
        return Labels(self.kind, self.values[indices], self.names)

    def counts(self) -> torch.Tensor:
        """Images per class, or images having each attribute (LongTensor [len(names)])."""
        if self.kind == "class":
            return torch.bincount(self.values, minlength=len(self.names))
        return self.values.sum(0).long()


@dataclass(frozen=True)
class LabelRequest:
    """What a data set's builder is asked to read besides the images."""

    kind: str = "none"  # one of LABEL_KINDS
    attributes: Optional[tuple[str, ...]] = None  # these names, in this order; None = all

    @property
    def wanted(self) -> bool:
        return self.kind != "none"


NO_LABELS = LabelRequest()


def labels_of(dataset: Dataset) -> Labels:
    """The labels a data set was built with (build_dataset(..., labels=...))."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise DCGANError("this data set was built without labels; build it with "
                         "build_dataset(cfg.dataset, labels='class' or 'attributes')")
    return labels


def class_labels(ids: torch.Tensor | Sequence[int], names: Sequence[str]) -> Labels:
    return Labels("class", torch.as_tensor(ids, dtype=torch.long), tuple(names))


def require_same_count(n_labels: int, n_images: int, source: str) -> None:
    if n_labels != n_images:
        raise DCGANError(f"{source} has {n_labels} labels but there are {n_images} images; "
                         "use the label file that belongs to these images")


# ---------------------------------------------------------------------------------------------
# MNIST: IDX1 label files


def read_idx_bytes(path: Path, what: str) -> bytes:
    """The bytes of an IDX file, gzipped (.gz) or not; `what` names it in the error."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as error:
        raise DCGANError(f"cannot read {what} {path}: {error}") from error


def read_idx_labels(path: Path) -> torch.Tensor:
    """Read an IDX1 label file (gzipped or not) as a LongTensor [N]."""
    data = read_idx_bytes(path, "MNIST label file")
    if len(data) < 8:
        raise DCGANError(f"{path} is not an IDX label file (only {len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if magic != 2049:
        raise DCGANError(f"{path} is not an IDX label file (magic number {magic}, expected 2049)")
    if len(data) < 8 + count:
        raise DCGANError(f"{path} is truncated: {len(data)} bytes, expected {8 + count}")
    labels = np.frombuffer(data, dtype=np.uint8, count=count, offset=8)
    if labels.size and labels.max() > 9:
        raise DCGANError(f"{path} holds label {labels.max()}; MNIST labels are the digits 0-9")
    return torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Folders: one sub-folder per class


def folder_classes(paths: Sequence[Path], root: Path) -> Labels:
    """Class ids from the first folder under `root` of each image (nested folders inside a
    class folder belong to it); ids number the sorted folder names, as in ImageFolder."""
    tops = [path.relative_to(root).parts for path in paths]
    outside = [path for path, parts in zip(paths, tops) if len(parts) < 2]
    if outside:
        raise DCGANError(f"{len(outside)} image(s) lie directly in {root} (e.g. "
                         f"{outside[0].name}), outside any class folder; class labels need every "
                         "image inside one sub-folder per class")
    names = sorted({parts[0] for parts in tops})
    if len(names) < 2:
        raise DCGANError(f"{root} has one class folder ({names[0]}); class labels need at least "
                         "two sub-folders, one per class")
    ids = {name: index for index, name in enumerate(names)}
    return class_labels([ids[parts[0]] for parts in tops], names)


# ---------------------------------------------------------------------------------------------
# CelebA: list_attr_celeba.txt (a count, 40 names, then one row of -1/1 per face)


def find_attribute_file(folders: Sequence[Path]) -> tuple[Path, bool]:
    """(the attribute file, whether it is a partial copy): the official name first."""
    for folder in folders:
        if (folder / CELEBA_ATTRIBUTE_FILE).is_file():
            return folder / CELEBA_ATTRIBUTE_FILE, False
    for folder in folders:
        partial = sorted(folder.glob(CELEBA_PARTIAL_ATTRIBUTES))
        if len(partial) > 1:
            raise DCGANError(f"{folder} holds {len(partial)} partial attribute files "
                             f"({', '.join(p.name for p in partial)}); keep one, or put the full "
                             f"{CELEBA_ATTRIBUTE_FILE} there")
        if partial:
            return partial[0], True
    raise DCGANError(f"CelebA attributes need {CELEBA_ATTRIBUTE_FILE} in {folders[0]}; download "
                     "it from the CelebA page (Anno/list_attr_celeba.txt) and put it there")


def read_attribute_rows(path: Path, partial: bool) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the attribute names, each face's file name -> its row of values, unparsed)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DCGANError(f"cannot read CelebA attribute file {path}: {error}") from error
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DCGANError(f"{path} is not a CelebA attribute file (expected a count on its first "
                         "line and the attribute names on the second)")
    names = tuple(lines[1].split())
    rows = {}
    for line in lines[2:]:
        parts = line.split(None, 1)
        if parts:
            rows[parts[0]] = parts[1] if len(parts) == 2 else ""
    stated = int(lines[0])
    if not partial and len(rows) != stated:
        raise DCGANError(f"{path} has {len(rows)} rows but its first line says {stated}: the file "
                         "is incomplete; download list_attr_celeba.txt again")
    return names, rows


def attribute_columns(names: Sequence[str], wanted: Optional[Sequence[str]], path: Path
                      ) -> list[int]:
    """The columns of the wanted attributes, in the order asked for (all when None)."""
    if wanted is None:
        return list(range(len(names)))
    if not wanted:
        raise DCGANError("name at least one CelebA attribute (or none to use all 40)")
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise DCGANError(f"CelebA has no attribute {unknown[0]!r} (in {path.name}); choose from "
                         f"{', '.join(names)}")
    twice = sorted({name for name in wanted if list(wanted).count(name) > 1})
    if twice:
        raise DCGANError(f"attribute {twice[0]!r} is named twice; name each attribute once")
    return [names.index(name) for name in wanted]


def celeba_attributes(paths: Sequence[Path], folders: Sequence[Path],
                      wanted: Optional[Sequence[str]]) -> tuple[list[Path], Labels]:
    """The faces among `paths` that have attribute rows, and their attributes (0/1)."""
    path, partial = find_attribute_file(folders)
    names, rows = read_attribute_rows(path, partial)
    columns = attribute_columns(names, wanted, path)
    kept = [face for face in paths if face.name in rows]
    if not kept:
        raise DCGANError(f"none of the {len(paths)} faces has a row in {path}; use the "
                         "attribute file of these images")
    if len(kept) < len(paths):
        report = log.info if partial else log.warning
        report("celeba attributes: %d of %d faces have a row in %s; using those %d",
               len(kept), len(paths), path.name, len(kept))
    try:
        table = np.array([rows[face.name].split() for face in kept], dtype=np.int8)
    except ValueError as error:  # a row of another length, or a value that is no number
        raise DCGANError(f"{path} has a row that is not {len(names)} values of -1 or 1 "
                         f"({error}); download list_attr_celeba.txt again") from error
    if table.ndim != 2 or table.shape[1] != len(names) or not np.isin(table, (-1, 0, 1)).all():
        raise DCGANError(f"{path} has a row that is not {len(names)} values of -1 or 1; "
                         "download list_attr_celeba.txt again")
    values = torch.from_numpy((table[:, columns] > 0).astype(np.float32))
    return kept, Labels("attributes", values, tuple(names[c] for c in columns))
