"""The label classifier behind GAN-test: trained on the bundled real digits it reads held-out
digits it never saw, its metrics read real images as a user expects (right classes, even
shares, one lopsided share for a single digit), attributes work per name, training is
reproducible, and its cache file is safe to load and ignored when torn or foreign."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dcgan.config import compose_config
from dcgan.data.datasets import build_dataset
from dcgan.data.labels import DIGIT_NAMES, Labels, class_labels, labels_of
from dcgan.errors import DCGANError
from dcgan.files.images import to_signed_unit, to_uint8
from dcgan.quality import classifier as classifier_module
from dcgan.quality.classifier import (
    LabelClassifier,
    attribute_accuracy,
    class_shares,
    classifier_for,
    data_fingerprint,
    gan_test_accuracy,
    load_classifier,
    per_class_accuracy,
    save_classifier,
    share_ratio,
    split_rows,
    train_classifier,
)

ATTRIBUTES = ("left_bright", "right_bright", "stripe")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, Labels]:
    """The bundled 10,000 real MNIST digits at 32 x 32, in [-1, 1], with their classes."""
    cfg = compose_config(["dataset=mnist10k", "dataset.image_size=32"])
    dataset = build_dataset(cfg.dataset, labels="class")
    return to_signed_unit(dataset.decoded()), labels_of(dataset)


@pytest.fixture(scope="module")
def digit_classifier(digits):
    images, labels = digits
    return train_classifier(images, labels, seed=0)


@pytest.fixture(scope="module")
def held_out_digits(digits):
    """The real digits the classifier did not train on (seed 0, 10 %)."""
    images, labels = digits
    _, held = split_rows(len(labels), 0.1, seed=0)
    return images[held], labels.values[held]


@pytest.fixture(scope="module")
def small_digits(digits) -> tuple[torch.Tensor, Labels]:
    images, labels = digits
    return images[:512], labels.take(slice(0, 512))


@pytest.fixture(scope="module")
def tiny_classifier(small_digits):
    """One epoch on 512 digits: enough for the file and error tests."""
    return train_classifier(*small_digits, seed=0, epochs=1)


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 64), (3, 128)])
def test_the_network_reads_every_image_size_the_package_trains_at(channels, size):
    model = LabelClassifier(channels, size, n_outputs=5).eval()
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 5)


def test_a_size_that_does_not_halve_to_4_is_refused():
    with pytest.raises(DCGANError, match="power-of-two image size"):
        LabelClassifier(3, 48, n_outputs=5)


# ---------------------------------------------------------------------------------------------
# Digits


def test_it_reads_real_digits_it_did_not_train_on(digit_classifier):
    assert digit_classifier.kind == "class"
    assert digit_classifier.names == DIGIT_NAMES
    assert (digit_classifier.channels, digit_classifier.image_size) == (1, 32)
    assert digit_classifier.held_out_count == 1000
    assert digit_classifier.held_out_accuracy >= 0.95
    assert not digit_classifier.model.training


def test_the_held_out_digits_are_kept_out_of_training():
    train, held = split_rows(10_000, 0.1, seed=0)
    assert len(held) == 1000 and len(train) == 9000
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert torch.equal(split_rows(10_000, 0.1, seed=0)[1], held)
    assert not torch.equal(split_rows(10_000, 0.1, seed=1)[1], held)


def test_gan_test_accuracy_of_real_digits_at_their_true_class(digit_classifier, held_out_digits):
    images, true_ids = held_out_digits
    accuracy = gan_test_accuracy(digit_classifier, images, true_ids)
    assert accuracy == pytest.approx(digit_classifier.held_out_accuracy)
    per_class = per_class_accuracy(digit_classifier, images, true_ids)
    assert tuple(per_class) == DIGIT_NAMES
    assert min(per_class.values()) >= 0.9


def test_real_digits_at_a_wrong_class_score_near_zero(digit_classifier, held_out_digits):
    images, true_ids = held_out_digits
    assert gan_test_accuracy(digit_classifier, images, (true_ids + 1) % 10) < 0.05


def test_real_digits_are_read_as_even_class_shares(digit_classifier, held_out_digits):
    shares = class_shares(digit_classifier, held_out_digits[0])
    assert tuple(shares) == DIGIT_NAMES
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(0.07 <= share <= 0.13 for share in shares.values()), shares
    assert share_ratio(shares) < 1.6


def test_a_single_digit_gives_a_lopsided_share(digit_classifier, held_out_digits):
    images, true_ids = held_out_digits
    ones = images[true_ids == 1]
    shares = class_shares(digit_classifier, ones)
    assert shares["1"] >= 0.95
    assert share_ratio(shares) > 20  # inf when some digit gets no image at all


def test_share_ratio():
    assert share_ratio({"0": 0.5, "1": 0.5}) == 1.0
    assert share_ratio({"0": 0.75, "1": 0.25}) == 3.0
    assert share_ratio({"0": 1.0, "1": 0.0}) == math.inf


def test_uint8_images_read_as_their_float_form(digit_classifier, digits):
    images = digits[0][:200]
    assert class_shares(digit_classifier, to_uint8(images)) == class_shares(digit_classifier,
                                                                            images)


# ---------------------------------------------------------------------------------------------
# Reproducibility


def test_the_same_seed_gives_the_same_weights(small_digits, tiny_classifier):
    rng_before = torch.get_rng_state()
    again = train_classifier(*small_digits, seed=0, epochs=1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    first, second = tiny_classifier.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert again.held_out_accuracy == tiny_classifier.held_out_accuracy
    other = train_classifier(*small_digits, seed=1, epochs=1).model.state_dict()
    assert not torch.equal(first["head.weight"], other["head.weight"])


# ---------------------------------------------------------------------------------------------
# Attributes


def synthetic_attributes(n: int, seed: int) -> tuple[torch.Tensor, Labels]:
    """RGB 32 x 32 noise images whose three 0/1 attributes are drawn in: a bright left half,
    a bright right half, a horizontal stripe across the middle."""
    rng = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n, 3), generator=rng).float()
    images = torch.rand(n, 3, 32, 32, generator=rng) * 0.6 - 0.8  # dark noise
    images[:, :, :, :16] += bits[:, 0, None, None, None] * 1.0
    images[:, :, :, 16:] += bits[:, 1, None, None, None] * 1.0
    images[:, :, 14:18, :] = torch.where(bits[:, 2, None, None, None] > 0, 1.0,
                                         images[:, :, 14:18, :])
    return images.clamp(-1, 1), Labels("attributes", bits, ATTRIBUTES)


@pytest.fixture(scope="module")
def attribute_classifier():
    images, labels = synthetic_attributes(1200, seed=0)
    return train_classifier(images, labels, seed=0, epochs=2)


def test_attributes_are_learnt_and_scored_per_attribute(attribute_classifier):
    assert attribute_classifier.kind == "attributes"
    assert attribute_classifier.names == ATTRIBUTES
    assert tuple(attribute_classifier.held_out_per_attribute) == ATTRIBUTES
    assert min(attribute_classifier.held_out_per_attribute.values()) > 0.9
    assert attribute_classifier.held_out_accuracy == pytest.approx(
        sum(attribute_classifier.held_out_per_attribute.values()) / 3)


def test_attribute_accuracy_is_per_name(attribute_classifier):
    images, labels = synthetic_attributes(300, seed=1)  # images it never saw
    accuracy = attribute_accuracy(attribute_classifier, images, labels.values)
    assert tuple(accuracy) == ATTRIBUTES
    assert min(accuracy.values()) > 0.9
    requested = labels.values.clone()
    requested[:, 2] = 1 - requested[:, 2]  # ask for the stripe exactly where there is none
    wrong_stripe = attribute_accuracy(attribute_classifier, images, requested)
    assert wrong_stripe["stripe"] < 0.1
    assert wrong_stripe["left_bright"] == accuracy["left_bright"]


def test_class_metrics_refuse_an_attribute_classifier(attribute_classifier):
    images, _ = synthetic_attributes(4, seed=2)
    with pytest.raises(DCGANError, match="needs a classifier of class labels"):
        class_shares(attribute_classifier, images)
    with pytest.raises(DCGANError, match="needs a classifier of class labels"):
        gan_test_accuracy(attribute_classifier, images, [0, 1, 0, 1])


# ---------------------------------------------------------------------------------------------
# The classifier file


def test_a_saved_classifier_loads_and_predicts_the_same(tmp_path, tiny_classifier, digits):
    path = tmp_path / "classifier.pt"
    save_classifier(dataclasses.replace(tiny_classifier, source="mnist10k-32px"), path)
    contents = torch.load(path, map_location="cpu", weights_only=True)
    assert contents["source"] == "mnist10k-32px" and contents["names"] == list(DIGIT_NAMES)
    loaded = load_classifier(path, expected_source="mnist10k-32px")
    assert loaded is not None and loaded.names == DIGIT_NAMES
    assert loaded.held_out_accuracy == tiny_classifier.held_out_accuracy
    images = digits[0][:300]
    with torch.no_grad():
        assert torch.equal(loaded.model(images), tiny_classifier.model(images))
    assert [path.name] == [p.name for p in tmp_path.iterdir()]  # no temporary file left


def test_a_missing_foreign_or_torn_file_is_not_used(tmp_path, tiny_classifier):
    path = tmp_path / "classifier.pt"
    assert load_classifier(path) is None
    save_classifier(dataclasses.replace(tiny_classifier, source="mnist10k-32px"), path)
    assert load_classifier(path, expected_source="cifar10-32px") is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert load_classifier(path) is None
    path.write_bytes(b"not a classifier")
    assert load_classifier(path) is None
    torch.save({"weights": torch.zeros(3)}, path)
    assert load_classifier(path) is None


def test_classifier_for_trains_once_then_reads_the_file(tmp_path, small_digits, monkeypatch):
    path = tmp_path / "cache" / "classifier.pt"
    first = classifier_for(path, "first-512", *small_digits, epochs=1)
    assert path.is_file() and first.source == "first-512"

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reading the file")

    with monkeypatch.context() as patch:
        patch.setattr(classifier_module, "train_classifier", no_training)
        again = classifier_for(path, "first-512", *small_digits, epochs=1)
    assert torch.equal(again.model.head.weight, first.model.head.weight)
    retrained = classifier_for(path, "first-512", *small_digits, epochs=1, seed=1)
    assert retrained.settings.seed == 1  # other settings: trained again
    assert load_classifier(path).settings.seed == 1


def test_the_data_fingerprint_changes_with_images_or_labels(small_digits):
    images, labels = small_digits
    fingerprint = data_fingerprint(images, labels)
    assert fingerprint == data_fingerprint(to_uint8(images), labels)
    relabelled = Labels("class", (labels.values + 1) % 10, labels.names)
    assert data_fingerprint(images, relabelled) != fingerprint
    assert data_fingerprint(images.flip(3), labels) != fingerprint


# ---------------------------------------------------------------------------------------------
# Mistakes a user can make


def test_wrong_channels_or_size_are_refused_clearly(tiny_classifier):
    with pytest.raises(DCGANError, match=r"reads images N x 1 x 32 x 32 .*not \(4, 3, 32, 32\)"):
        class_shares(tiny_classifier, torch.zeros(4, 3, 32, 32))
    with pytest.raises(DCGANError, match=r"N x 1 x 32 x 32"):
        class_shares(tiny_classifier, torch.zeros(4, 1, 64, 64))


def test_images_outside_the_signed_unit_range_are_refused(tiny_classifier):
    with pytest.raises(DCGANError, match=r"must lie in \[-1, 1\]"):
        class_shares(tiny_classifier, torch.full((2, 1, 32, 32), 255.0))


def test_requested_classes_must_match_the_images(tiny_classifier):
    images = torch.zeros(4, 1, 32, 32)
    with pytest.raises(DCGANError, match="3 requested classes for 4 images"):
        gan_test_accuracy(tiny_classifier, images, [0, 1, 2])
    with pytest.raises(DCGANError, match=r"must lie in 0\.\.9"):
        gan_test_accuracy(tiny_classifier, images, [0, 1, 2, 10])
    with pytest.raises(DCGANError, match="needs a classifier of attributes"):
        attribute_accuracy(tiny_classifier, images, torch.zeros(4, 10))


def test_training_refuses_labels_that_do_not_fit(small_digits):
    images, labels = small_digits
    with pytest.raises(DCGANError, match="512 labels for 100 images"):
        train_classifier(images[:100], labels, epochs=1)
    with pytest.raises(DCGANError, match="held_out"):
        train_classifier(images, labels, held_out=0.0, epochs=1)
    with pytest.raises(DCGANError, match=r"must lie in \[-1, 1\]"):
        train_classifier(images.add(1).mul(127.5), labels, epochs=1)
    with pytest.raises(DCGANError, match="at least two classes"):
        train_classifier(images[:8], class_labels([0] * 8, ["0"]), epochs=1)
