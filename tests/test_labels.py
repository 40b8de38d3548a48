"""Labels from the data: MNIST's label files, class folders, CIFAR-10 (python batches or class
folders), CelebA's attributes; the same images with or without them; one-line refusals."""

import gzip
import io
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.data.cifar10 import CIFAR10_CLASSES
from dcgan.data.datasets import DATASETS, build_dataset
from dcgan.data.labels import labels_of, read_idx_labels
from dcgan.errors import DCGANError


def build(make_config, *overrides, labels="none", attributes=None):
    return build_dataset(make_config(*overrides).dataset, labels=labels, attributes=attributes)


def one_line_error(match: str, make_config, *overrides, **kwargs) -> str:
    """The DCGANError building this data set raises: one line, saying `match`."""
    with pytest.raises(DCGANError, match=match) as caught:
        build(make_config, *overrides, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def write_image(path: Path, colour=(200, 120, 90), size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


# -- mnist, mnist10k, digits -------------------------------------------------------------------

def test_mnist10k_labels_are_the_shared_test_labels(make_config, shared_data):
    labels = labels_of(build(make_config, labels="class"))
    expected = read_idx_labels(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.kind == "class" and labels.names == tuple("0123456789")
    assert labels.values.dtype == torch.long and torch.equal(labels.values, expected)
    assert labels.counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_labels_leave_the_images_as_they_were(make_config):
    plain = build(make_config, "dataset.limit=9")
    labelled = build(make_config, "dataset.limit=9", labels="class")
    assert torch.equal(plain.images, labelled.images) and plain.labels is None
    assert labels_of(labelled).values.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5]  # MNIST's first 9


def test_digits_labels_are_scikit_learns(make_config):
    from sklearn.datasets import load_digits

    labels = labels_of(build(make_config, "dataset=digits", "dataset.limit=100", labels="class"))
    assert labels.values.tolist() == load_digits().target[:100].tolist()


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_mnist_labels_beside_the_images(make_config, tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, np.zeros((7, 28, 28)))
    mnist = ("dataset=mnist", f"dataset.root={tmp_path}", "dataset.split=test")
    one_line_error("t10k-labels-idx1-ubyte.gz", make_config, *mnist, labels="class")
    assert len(build(make_config, *mnist)) == 7  # without labels, none are needed

    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.array([3, 1, 4, 1, 5]))
    one_line_error("has 5 labels but there are 7 images", make_config, *mnist, labels="class")

    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.array([3, 1, 4, 1, 5, 9, 2]))
    labels = labels_of(build(make_config, *mnist, "dataset.limit=4", labels="class"))
    assert labels.values.tolist() == [3, 1, 4, 1]


# -- folders -----------------------------------------------------------------------------------

def test_folder_classes_are_the_sorted_sub_folders(make_config, tmp_path):
    write_image(tmp_path / "dogs" / "a.png")
    write_image(tmp_path / "cats" / "b.png")
    write_image(tmp_path / "cats" / "kittens" / "c.png")  # nested: still a cat
    write_image(tmp_path / "emus" / "d.jpg")
    folder = ("dataset=folder", f"dataset.root={tmp_path}")
    dataset = build(make_config, *folder, labels="class")
    labels = labels_of(dataset)
    assert labels.names == ("cats", "dogs", "emus")
    names = [labels.names[i] for i in labels.values]
    assert names == [path.relative_to(tmp_path).parts[0] for path in dataset.paths]
    assert labels.counts().tolist() == [2, 1, 1]
    assert dataset.paths == build(make_config, *folder).paths


def test_folder_labels_refuse_what_has_no_classes(make_config, tmp_path):
    write_image(tmp_path / "only" / "a.png")
    write_image(tmp_path / "only" / "b.png")
    folder = ("dataset=folder", f"dataset.root={tmp_path}")
    one_line_error("one class folder", make_config, *folder, labels="class")
    write_image(tmp_path / "other" / "c.png")
    write_image(tmp_path / "loose.png")
    one_line_error("outside any class folder", make_config, *folder, labels="class")
    assert len(build(make_config, *folder)) == 4  # the images themselves are fine


# -- cifar10 -----------------------------------------------------------------------------------

def test_cifar10_class_folders(make_config, shared_data):
    root = shared_data / "cifar10" / "test"
    dataset = build(make_config, "dataset=cifar10", f"dataset.root={root}", labels="class")
    labels = labels_of(dataset)
    assert labels.names == CIFAR10_CLASSES == tuple(sorted(CIFAR10_CLASSES))
    assert labels.counts().tolist() == [1000] * 10
    for index in (0, 4321, len(dataset) - 1):
        assert dataset.paths[index].parent.name == labels.names[labels.values[index]]
        image = dataset[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert image.min() >= -1 and image.max() <= 1 and image.std() > 0


def test_cifar10_split_folders_and_wrong_classes(make_config, tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for index in range(count):
            write_image(tmp_path / split / CIFAR10_CLASSES[index] / f"{index}.png")
    cifar = ("dataset=cifar10", f"dataset.root={tmp_path}")
    assert len(build(make_config, *cifar)) == 3
    assert len(build(make_config, *cifar, "dataset.split=test")) == 2
    one_line_error("CIFAR-10's are airplane, automobile", make_config, *cifar, labels="class")
    one_line_error("no CIFAR-10 in", make_config, "dataset=cifar10",
                   f"dataset.root={tmp_path / 'train' / 'bird'}")


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str (BINSTRING), as the CIFAR-10 batches were written."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_str_of_python2(self, obj: bytes) -> None:
        n = len(obj)
        size = bytes([n]) if n < 256 else struct.pack("<i", n)
        self.write((pickle.SHORT_BINSTRING if n < 256 else pickle.BINSTRING) + size + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str_of_python2


def write_batch(path: Path, content: dict) -> None:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(content)
    # numpy 1.x, which wrote the real files, named its module numpy.core
    path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n",
                                               b"cnumpy.core.multiarray\n"))


def make_batches(folder: Path, sizes: dict[str, int]) -> dict[str, tuple[np.ndarray, list]]:
    """Python batches like torchvision's, each image a distinct colour; returns what each holds."""
    folder.mkdir(parents=True, exist_ok=True)
    written, start = {}, 0
    for name, n in sizes.items():
        rgb = (np.arange(start, start + n)[:, None] * np.array([1, 3, 7]) % 256).astype(np.uint8)
        data = np.repeat(rgb, 1024, axis=1)  # each channel's 1024 pixels, R then G then B
        labels = [(start + i) % 10 for i in range(n)]
        write_batch(folder / name, {b"batch_label": name.encode(), b"labels": labels,
                                    b"data": data, b"filenames": [b"x.png"] * n})
        written[name], start = (data, labels), start + n
    write_batch(folder / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                                          b"num_vis": 3072, b"num_cases_per_batch": 10000})
    return written


def test_cifar10_python_batches(make_config, tmp_path):
    sizes = {**{f"data_batch_{i}": 3 for i in range(1, 6)}, "test_batch": 4}
    written = make_batches(tmp_path / "cifar-10-batches-py", sizes)
    cifar = ("dataset=cifar10", f"dataset.root={tmp_path}")
    train = build(make_config, *cifar, labels="class")
    assert len(train) == 15 and train.images.shape == (15, 3, 32, 32)
    data, labels = written["data_batch_2"]
    assert torch.equal(train.images[3:6], torch.from_numpy(data).reshape(3, 3, 32, 32))
    assert labels_of(train).values[3:6].tolist() == labels
    assert labels_of(train).names == CIFAR10_CLASSES
    assert torch.equal(build(make_config, *cifar).images, train.images)

    test = build(make_config, *cifar, "dataset.split=test", "dataset.limit=2", labels="class")
    assert len(test) == 2 and labels_of(test).values.tolist() == written["test_batch"][1][:2]
    assert build(make_config, *cifar, "dataset.image_size=64")[0].shape == (3, 64, 64)


def test_cifar10_batches_refuse_what_they_should(make_config, tmp_path):
    make_batches(tmp_path, {"test_batch": 2})
    cifar = ("dataset=cifar10", f"dataset.root={tmp_path}")
    one_line_error("needs data_batch_1, data_batch_2", make_config, *cifar)

    class Trap:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Trap()}, protocol=2))
    one_line_error("refusing to load .*getcwd", make_config, *cifar, "dataset.split=test")

    write_batch(tmp_path / "test_batch", {b"data": np.zeros((3, 3072), np.uint8),
                                          b"labels": [1, 2]})
    assert len(build(make_config, *cifar, "dataset.split=test")) == 3
    one_line_error("has 2 labels but there are 3 images", make_config, *cifar,
                   "dataset.split=test", labels="class")


# -- celeba ------------------------------------------------------------------------------------

def test_celeba_partial_attributes(make_config, shared_data, caplog):
    celeba = ("dataset=celeba", f"dataset.root={shared_data / 'celeba'}")
    with caplog.at_level(logging.INFO, logger="dcgan.data.labels"):
        dataset = build(make_config, *celeba, labels="attributes")
    assert "645 of 6097 faces have a row" in caplog.text
    labels = labels_of(dataset)
    assert len(dataset) == len(labels) == 645 and labels.values.shape == (645, 40)
    assert labels.names[:2] == ("5_o_Clock_Shadow", "Arched_Eyebrows") and len(labels.names) == 40
    assert all(path.name <= "020000.jpg" for path in dataset.paths)
    assert set(labels.values.unique().tolist()) == {0.0, 1.0}
    # 000001.jpg: smiling, not male (the official file's first row)
    assert dataset.paths[0].name == "000001.jpg"
    pair = labels_of(build(make_config, *celeba, labels="attributes",
                           attributes=["Smiling", "Male"]))
    assert pair.names == ("Smiling", "Male") and pair.values[0].tolist() == [1.0, 0.0]
    assert torch.equal(pair.values, labels.values[:, [31, 20]])


ATTRIBUTES = ["Smiling", "Male", "Young"]


def make_celeba(root: Path, n: int, rows: int, header: int | None = None) -> None:
    for index in range(1, n + 1):
        write_image(root / "img_align_celeba" / f"{index:06d}.jpg", size=(178, 218))
    lines = [str(header if header is not None else rows), "  ".join(ATTRIBUTES)]
    # face i smiles if i = 1, is male if i = 3, is young if i = 2
    lines += [f"{i:06d}.jpg " + " ".join("1" if i == j else "-1" for j in (1, 3, 2))
              for i in range(1, rows + 1)]
    (root / "list_attr_celeba.txt").write_text("\r\n".join(lines) + "\r\n")


def test_celeba_attribute_refusals(make_config, tmp_path):
    for index in range(1, 4):
        write_image(tmp_path / "img_align_celeba" / f"{index:06d}.jpg", size=(178, 218))
    celeba = ("dataset=celeba", f"dataset.root={tmp_path}")
    one_line_error("attributes need list_attr_celeba.txt", make_config, *celeba,
                   labels="attributes")
    one_line_error("no class labels .*it has attributes labels", make_config, *celeba,
                   labels="class")
    make_celeba(tmp_path, 3, rows=3)
    one_line_error("no attribute 'Bald'.*choose from Smiling, Male, Young", make_config, *celeba,
                   labels="attributes", attributes=["Smiling", "Bald"])
    make_celeba(tmp_path, 3, rows=3, header=5)
    one_line_error("has 3 rows but its first line says 5", make_config, *celeba,
                   labels="attributes")


def test_celeba_attributes_stay_with_their_faces_in_the_cache(make_config, tmp_path, caplog):
    make_celeba(tmp_path, 4, rows=3)
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    celeba = ("dataset=celeba", f"dataset.root={tmp_path}", "dataset.cache=true",
              f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.image_size=32")
    with caplog.at_level(logging.WARNING):
        dataset = build(make_config, *celeba, labels="attributes", attributes=["Male"])
    assert "3 of 4 faces have a row" in caplog.text  # the full file lacks 000004: a warning
    assert len(dataset) == 2  # 000001 and 000003; 000002 could not be decoded
    assert labels_of(dataset).values.tolist() == [[0.0], [1.0]]
    assert len(list((tmp_path / "cache").glob("*-attributes.npy"))) == 1
    plain = build(make_config, *celeba)
    assert len(plain) == 3 and plain.labels is None  # all decodable faces, its own cache


# -- what has no labels ------------------------------------------------------------------------

def test_labels_only_where_there_are_some(make_config):
    one_line_error("dataset=fake has no class labels", make_config, "dataset=fake",
                   labels="class")
    one_line_error("attributes labels come with celeba", make_config, labels="attributes")
    with pytest.raises(DCGANError, match="built without labels"):
        labels_of(build(make_config, "dataset.limit=4"))
    assert {name for name, kind in DATASETS.items() if kind.labels} == {
        "mnist10k", "digits", "mnist", "celeba", "cifar10", "folder"}
