import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.data.datasets import DATASETS, ImageFiles, build_dataset, read_idx_images
from dcgan.data.loader import collate_images
from dcgan.errors import DCGANError


def dataset_for(make_config, *overrides):
    return build_dataset(make_config(*overrides).dataset)


def assert_images(images: torch.Tensor, channels: int, size: int = 64):
    assert images.dtype == torch.float32
    assert images.shape[-3:] == (channels, size, size)
    assert images.min() >= -1.0 and images.max() <= 1.0


# -- digits and fake ---------------------------------------------------------------------------

def test_bundled_mnist_is_the_offline_default(make_config):
    dataset = dataset_for(make_config)
    assert len(dataset) == 10_000
    image = dataset[0]
    assert_images(image, channels=1)
    assert image.min() == -1.0 and image.max() > 0.9  # black background, bright strokes


def test_bundled_mnist_is_the_original_test_set(make_config, shared_data):
    shared = dataset_for(make_config, "dataset=mnist", f"dataset.root={shared_data / 'mnist'}",
                         "dataset.split=test", "dataset.limit=500")
    bundled = dataset_for(make_config, "dataset.limit=500")
    assert torch.equal(torch.stack([bundled[i] for i in range(500)]),
                       torch.stack([shared[i] for i in range(500)]))


def test_digits_are_scikit_learns(make_config):
    dataset = dataset_for(make_config, "dataset=digits")
    assert len(dataset) == 1797
    assert_images(dataset[0], channels=1)


def test_limit_keeps_the_first_images(make_config):
    full = dataset_for(make_config)
    limited = dataset_for(make_config, "dataset.limit=10")
    assert len(limited) == 10
    assert torch.equal(limited[9], full[9])


def test_fake_images_are_deterministic(make_config):
    dataset = dataset_for(make_config, "dataset=fake", "dataset.size=50", "dataset.channels=1")
    assert len(dataset) == 50
    assert_images(dataset[3], channels=1)
    assert torch.equal(dataset[3], dataset[3])
    assert not torch.equal(dataset[3], dataset[4])


# -- mnist -------------------------------------------------------------------------------------

def write_idx_images(path: Path, images: np.ndarray, compress: bool) -> None:
    header = struct.pack(">IIII", 2051, images.shape[0], 28, 28)
    data = header + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files(make_config, tmp_path, compress):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 28, 28))
    test = np.zeros((7, 28, 28))
    test[:, 10:18, 12:16] = 255  # a bright bar in the middle
    suffix = ".gz" if compress else ""
    write_idx_images(tmp_path / f"train-images-idx3-ubyte{suffix}", train, compress)
    write_idx_images(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test, compress)

    dataset = dataset_for(make_config, "dataset=mnist", f"dataset.root={tmp_path}")
    assert len(dataset) == 20
    assert_images(dataset[0], channels=1)

    test_set = dataset_for(make_config, "dataset=mnist", f"dataset.root={tmp_path}",
                           "dataset.split=test")
    assert len(test_set) == 7
    image = test_set[0][0]
    assert image[32, 32] == 1.0 and image[2, 2] == -1.0  # bar centre white, corner black


def test_mnist_missing_files_name_what_is_expected(make_config, tmp_path):
    with pytest.raises(DCGANError, match="t10k-images-idx3-ubyte.gz.*dataset.download=true"):
        dataset_for(make_config, "dataset=mnist", f"dataset.root={tmp_path}",
                    "dataset.split=test")


def test_mnist_truncated_file_is_reported(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2051, 100, 28, 28) + bytes(500))
    with pytest.raises(DCGANError, match="truncated"):
        read_idx_images(path)


def test_shared_mnist_test_split(make_config, shared_data):
    dataset = dataset_for(make_config, "dataset=mnist", f"dataset.root={shared_data / 'mnist'}",
                          "dataset.split=test")
    assert len(dataset) == 10_000
    assert_images(dataset[0], channels=1)


# -- celeba ------------------------------------------------------------------------------------

def write_face(path: Path, colour=(200, 120, 90), size=(178, 218)) -> None:
    image = Image.new("RGB", size, (0, 0, 0))
    # colour everywhere but the top and bottom 10 rows, which the 178x178 centre crop removes
    image.paste(colour, (0, 10, size[0], size[1] - 10))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95)


def make_celeba(root: Path, n: int = 6) -> None:
    for index in range(1, n + 1):
        write_face(root / "img_align_celeba" / f"{index:06d}.jpg")
    partition = "".join(f"{i:06d}.jpg {0 if i <= 3 else (1 if i <= 5 else 2)}\r\n"
                        for i in range(1, n + 1))
    (root / "list_eval_partition.txt").write_text(partition)


def test_celeba_crop_and_resize(make_config, tmp_path):
    make_celeba(tmp_path)
    dataset = dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path}")
    assert len(dataset) == 6
    image = dataset[0]
    assert_images(image, channels=3)
    # the central 178x178 square is all colour: no black border survives the crop
    blue = 90 / 127.5 - 1
    assert image[2].min() > blue - 0.05 and image[0].min() > 0.5


@pytest.mark.parametrize("split,count", [("train", 3), ("val", 2), ("test", 1), ("all", 6)])
def test_celeba_splits(make_config, tmp_path, split, count):
    make_celeba(tmp_path)
    dataset = dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path}",
                          f"dataset.split={split}")
    assert len(dataset) == count


def test_celeba_images_directly_in_root(make_config, tmp_path):
    for index in range(3):
        write_face(tmp_path / f"{index:06d}.jpg")
    assert len(dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path}")) == 3


def test_celeba_missing_folder_says_where_to_get_it(make_config, tmp_path):
    with pytest.raises(DCGANError, match="does not exist.*img_align_celeba"):
        dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path / 'nope'}")


def test_celeba_empty_folder(make_config, tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(DCGANError, match="no CelebA images"):
        dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path}")


def test_shared_celeba(make_config, shared_data):
    root = shared_data / "celeba"
    dataset = dataset_for(make_config, "dataset=celeba", f"dataset.root={root}")
    assert len(dataset) == 6097
    assert_images(dataset[0], channels=3)
    train = dataset_for(make_config, "dataset=celeba", f"dataset.root={root}",
                        "dataset.split=train")
    assert len(train) == 4657


# -- folder ------------------------------------------------------------------------------------

def make_folder(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (100, 50), (255, 0, 0)).save(root / "a" / "wide.png")
    Image.new("L", (40, 80), 128).save(root / "a" / "b" / "tall.jpg")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(root / "c.webp")
    (root / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_finds_images_recursively(make_config, tmp_path, channels):
    make_folder(tmp_path)
    dataset = dataset_for(make_config, "dataset=folder", f"dataset.root={tmp_path}",
                          f"dataset.channels={channels}")
    assert len(dataset) == 3
    for index in range(3):
        assert_images(dataset[index], channels=channels)
    if channels == 3:
        red = dataset[dataset.paths.index(tmp_path / "a" / "wide.png")]
        assert red[0].min() == 1.0 and red[1].max() == -1.0


def test_folder_without_images(make_config, tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DCGANError, match="no images in"):
        dataset_for(make_config, "dataset=folder", f"dataset.root={tmp_path}")


def test_folder_missing(make_config, tmp_path):
    with pytest.raises(DCGANError, match="does not exist"):
        dataset_for(make_config, "dataset=folder", f"dataset.root={tmp_path / 'missing'}")


def test_unreadable_image_is_reported_not_raised(make_config, tmp_path):
    make_folder(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = dataset_for(make_config, "dataset=folder", f"dataset.root={tmp_path}")
    assert isinstance(dataset, ImageFiles) and len(dataset) == 4
    images, bad = collate_images([dataset[i] for i in range(len(dataset))])
    assert images.shape == (3, 3, 64, 64)
    assert bad == [str(tmp_path / "broken.jpg")]


def test_decoding_matches_the_torchvision_recipe(make_config, tmp_path):
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
        tmp_path / "000001.png")
    Image.fromarray(rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)).save(tmp_path / "w.png")
    to_unit = transforms.Lambda(lambda t: t.float() / 127.5 - 1)
    celeba = dataset_for(make_config, "dataset=celeba", f"dataset.root={tmp_path}")
    recipe = transforms.Compose([transforms.CenterCrop(178), transforms.Resize(64),
                                 transforms.PILToTensor(), to_unit])
    with Image.open(tmp_path / "000001.png") as image:
        assert torch.equal(celeba[0], recipe(image.convert("RGB")))
    folder = dataset_for(make_config, "dataset=folder", f"dataset.root={tmp_path}")
    recipe = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64),
                                 transforms.PILToTensor(), to_unit])
    with Image.open(tmp_path / "w.png") as image:
        assert torch.equal(folder[1], recipe(image.convert("RGB")))


def test_the_registry_is_what_validation_reads(make_config):
    """A data set's splits, channels and root come from one registry entry."""
    from dcgan.config import validate

    for name, kind in DATASETS.items():
        composed = make_config(f"dataset={name}", "dataset.root=somewhere")
        for split in [*kind.splits, "nonsense"]:  # the data set's group file composed once
            cfg = composed.copy()
            cfg.dataset.split = split
            if split in kind.splits:
                validate(cfg)
            else:
                with pytest.raises(DCGANError, match="is not a split of"):
                    validate(cfg)
        if kind.needs_root:
            cfg = composed.copy()
            cfg.dataset.root = None
            with pytest.raises(DCGANError, match="dataset.root must be set"):
                validate(cfg)
