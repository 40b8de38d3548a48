"""A small label classifier trained on real images, and the "GAN-test" metrics it reads samples
with (Shmelkov et al., 2018, "How good is my GAN?").

The classifier learns the training data's labels: class ids (MNIST digits, folder classes) or
CelebA's 0/1 attributes. It is trained on real images only and scored on real images it did
not see (a seeded held-out share), so its own accuracy is known before it judges samples:

    trained = train_classifier(images, labels, seed=0)     # images in [-1, 1], a Labels record
    trained.held_out_accuracy                               # e.g. 0.98 on held-out real digits
    gan_test_accuracy(trained, samples, requested_ids)      # share read as the class asked for
    class_shares(trained, samples)                          # how evenly an unconditional G draws
    attribute_accuracy(trained, samples, requested_rows)    # per attribute, for CelebA

A trained classifier is kept in a file as a plain dict of tensors and primitives
(`save_classifier`, `load_classifier`, `classifier_for`); a file that is missing, torn, or
trained on other data or with other settings is trained again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcgan.data.labels import Labels
from dcgan.errors import DCGANError
from dcgan.files.atomic import atomic_path
from dcgan.files.images import to_signed_unit, to_uint8
from dcgan.nets.augment import translation

log = logging.getLogger(__name__)

FILE_FORMAT = "dcgan-label-classifier"
FILE_VERSION = 1
LEARNABLE_KINDS = ("class", "attributes")
PREDICT_BATCH = 500
SHIFT_RATIO = 1 / 16  # augmentation: shifts of up to 2 pixels at 32 x 32
RANGE_SLACK = 1e-3  # float images may overshoot [-1, 1] by this much (rounding)

Device = str | torch.device
# what reading a torn, foreign or older classifier file raises: it is trained again
UNREADABLE_FILE_ERRORS = (OSError, EOFError, RuntimeError, pickle.UnpicklingError, KeyError,
                          TypeError, ValueError, AttributeError)


class LabelClassifier(nn.Module):
    """A small CNN: stride-2 3x3 convolutions, each with BatchNorm and ReLU, halve the image
    down to 4 x 4; a linear head reads the flattened 4 x 4 features (where a digit's strokes lie
    matters, so they are not pooled away) and gives one logit per class or attribute. Any
    channel count, any power-of-two image size from 8 up."""

    def __init__(self, channels: int, image_size: int, n_outputs: int, width: int = 32):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise DCGANError(f"the label classifier needs a power-of-two image size of at least "
                             f"8, not {image_size}")
        self.channels, self.image_size, self.width = channels, image_size, width
        layers = conv_block(channels, width)  # state size. width x S/2 x S/2
        size, features = image_size // 2, width
        while size > 4:  # widths 2w, 4w, 4w, ...
            wider = min(features * 2, width * 4)
            layers += conv_block(features, wider)
            size, features = size // 2, wider
        self.features = nn.Sequential(*layers)  # state size. (4w at 32 px and up) x 4 x 4
        self.head = nn.Linear(features * 4 * 4, n_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], N x C x S x S -> logits N x K."""
        return self.head(self.features(images).flatten(1))


def conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    """A 3x3 convolution that halves the size, BatchNorm, ReLU."""
    return [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


@dataclass(frozen=True)
class TrainingSettings:
    """What a classifier was trained with; a cached one trained otherwise is trained again."""

    seed: int = 0
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-3
    held_out: float = 0.1  # share of the images kept out of training to score it
    augment: bool = True  # random shifts of up to 1/16 of the size
    width: int = 32  # channels of the first convolution


@dataclass
class TrainedClassifier:
    """A classifier in eval mode and what it knows: its labels and how well it reads real
    images it did not train on."""

    model: LabelClassifier
    kind: str  # "class" | "attributes"
    names: tuple[str, ...]  # class names by id, or attribute names by column
    image_size: int
    channels: int
    held_out_accuracy: float  # classes: top-1; attributes: mean of the per-attribute accuracies
    held_out_per_attribute: dict[str, float] = field(default_factory=dict)  # attributes only
    held_out_count: int = 0
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    source: str = ""  # what it was trained on, as the caller names it


# ---------------------------------------------------------------------------------------------
# Training


def train_classifier(images: torch.Tensor, labels: Labels, *, seed: int = 0, epochs: int = 3,
                     batch_size: int = 64, learning_rate: float = 2e-3, held_out: float = 0.1,
                     augment: bool = True, width: int = 32, device: Device = "cpu"
                     ) -> TrainedClassifier:
    """Train on all but a seeded `held_out` share of the real `images` (float in [-1, 1] or
    uint8, N x C x S x S) and score it on that share. Adam, with the learning rate falling
    linearly to 0; cross-entropy for classes, BCE-with-logits for attributes. The same seed
    gives the same weights on the same machine; torch's global RNG is left as it was."""
    settings = TrainingSettings(seed, epochs, batch_size, learning_rate, held_out, augment, width)
    check_training_data(images, labels, settings)
    train_rows, held_rows = split_rows(len(labels), held_out, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initial weights
        model = LabelClassifier(images.shape[1], images.shape[2], len(labels.names), width)
    model = model.to(device)
    fit(model, images[train_rows], labels.take(train_rows), settings)
    model.eval()
    trained = TrainedClassifier(model, labels.kind, labels.names, images.shape[2],
                                images.shape[1], math.nan, held_out_count=len(held_rows),
                                settings=settings)
    score_held_out(trained, images[held_rows], labels.take(held_rows))
    log.info("label classifier: held-out accuracy %.4f on %d real images",
             trained.held_out_accuracy, len(held_rows))
    return trained


def check_training_data(images: torch.Tensor, labels: Labels, settings: TrainingSettings) -> None:
    if labels.kind not in LEARNABLE_KINDS:
        raise DCGANError(f"a label classifier learns class or attribute labels, not "
                         f"{labels.kind!r}")
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DCGANError(f"the label classifier needs square images N x C x S x S, not "
                         f"{tuple(images.shape)}")
    check_signed_unit(images)
    if len(labels) != images.shape[0]:
        raise DCGANError(f"{len(labels)} labels for {images.shape[0]} images; give one label "
                         "per image")
    if labels.kind == "class" and len(labels.names) < 2:
        raise DCGANError("a class classifier needs at least two classes")
    if not 0 < settings.held_out < 1:
        raise DCGANError(f"held_out is the share of images kept out of training to score the "
                         f"classifier; it must lie between 0 and 1, not {settings.held_out}")
    n_held = round(settings.held_out * len(labels))
    if n_held < 1 or n_held >= len(labels):
        raise DCGANError(f"{len(labels)} images are too few to hold out {settings.held_out:.0%} "
                         "of them and train on the rest")
    if settings.epochs < 1 or settings.batch_size < 1:
        raise DCGANError("the label classifier needs at least one epoch and a batch size of "
                         "at least 1")


def split_rows(n: int, held_out: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows to train on, rows held out), from a permutation the seed fixes."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = round(held_out * n)
    return order[n_held:].sort().values, order[:n_held].sort().values


def fit(model: LabelClassifier, images: torch.Tensor, labels: Labels,
        settings: TrainingSettings) -> None:
    """Train `model` in place: shuffles and shifts draw from a generator the seed fixes."""
    device = next(model.parameters()).device
    rng = torch.Generator().manual_seed(settings.seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total_steps)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(labels), generator=rng)
        for rows in order.split(settings.batch_size):
            batch = as_signed_unit(images[rows]).to(device)
            if settings.augment:
                batch = shifted(batch, rng)
            loss = label_loss(model(batch), labels.values[rows].to(device), labels.kind)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


def shifted(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to SHIFT_RATIO of its size each way; uncovered pixels black."""
    return translation(images.add(1), rng, ratio=SHIFT_RATIO).sub(1)


def label_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "class":
        return F.cross_entropy(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets.float())


def score_held_out(trained: TrainedClassifier, images: torch.Tensor, labels: Labels) -> None:
    """Fill in the classifier's accuracy on real images it did not train on."""
    if labels.kind == "class":
        trained.held_out_accuracy = gan_test_accuracy(trained, images, labels.values)
        return
    trained.held_out_per_attribute = attribute_accuracy(trained, images, labels.values)
    per_attribute = list(trained.held_out_per_attribute.values())
    trained.held_out_accuracy = sum(per_attribute) / len(per_attribute)


# ---------------------------------------------------------------------------------------------
# Reading images


def as_signed_unit(images: torch.Tensor) -> torch.Tensor:
    """Float images as they are; uint8 images converted to [-1, 1]."""
    return to_signed_unit(images) if images.dtype == torch.uint8 else images.float()


def check_images(trained: TrainedClassifier, images: torch.Tensor) -> None:
    """Refuse images the classifier was not trained for, saying what it expects."""
    expected = (trained.channels, trained.image_size, trained.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise DCGANError(f"the label classifier reads images N x {expected[0]} x {expected[1]} x "
                         f"{expected[2]} (as it was trained), not {tuple(images.shape)}; "
                         "use a classifier trained on this data set at this image size")
    check_signed_unit(images)


def check_signed_unit(images: torch.Tensor) -> None:
    """Refuse float images outside [-1, 1] (e.g. 0..255 or 0..1 images passed as they are)."""
    if images.dtype != torch.uint8 and images.numel():
        low, high = torch.aminmax(images.detach())
        if low < -1 - RANGE_SLACK or high > 1 + RANGE_SLACK:
            raise DCGANError(f"images for the label classifier must lie in [-1, 1], these lie in "
                             f"[{low:.3g}, {high:.3g}]; convert them with to_signed_unit")


@torch.no_grad()
def logits_of(trained: TrainedClassifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's logits for `images` (N x K, on the CPU), in batches."""
    check_images(trained, images)
    device = next(trained.model.parameters()).device
    trained.model.eval()
    batches = [trained.model(as_signed_unit(batch).to(device)).float().cpu()
               for batch in images.split(PREDICT_BATCH)]
    return torch.cat(batches) if batches else torch.zeros(0, len(trained.names))


def predicted_classes(trained: TrainedClassifier, images: torch.Tensor) -> torch.Tensor:
    """The class id each image is read as (LongTensor [N])."""
    require_kind(trained, "class")
    return logits_of(trained, images).argmax(dim=1)


def predicted_attributes(trained: TrainedClassifier, images: torch.Tensor) -> torch.Tensor:
    """The attributes each image is read as having (float 0/1, N x K: sigmoid > 0.5)."""
    require_kind(trained, "attributes")
    return (logits_of(trained, images) > 0).float()


def require_kind(trained: TrainedClassifier, kind: str) -> None:
    if trained.kind != kind:
        what = {"class": "class labels", "attributes": "attributes"}
        raise DCGANError(f"this metric needs a classifier of {what[kind]}, but this one was "
                         f"trained on {what[trained.kind]}; train one on the right labels")


# ---------------------------------------------------------------------------------------------
# Metrics


def gan_test_accuracy(trained: TrainedClassifier, images: torch.Tensor,
                      requested_ids: torch.Tensor | Sequence[int]) -> float:
    """The share of `images` read as the class each was requested for (GAN-test)."""
    requested = requested_classes(trained, requested_ids, len(images))
    if not len(requested):
        raise DCGANError("GAN-test accuracy needs at least one image")
    return (predicted_classes(trained, images) == requested).float().mean().item()


def per_class_accuracy(trained: TrainedClassifier, images: torch.Tensor,
                       requested_ids: torch.Tensor | Sequence[int]) -> dict[str, float]:
    """For each class requested at least once, the share of its images read as it (classes
    never requested are left out)."""
    requested = requested_classes(trained, requested_ids, len(images))
    correct = (predicted_classes(trained, images) == requested).float()
    return {name: correct[requested == class_id].mean().item()
            for class_id, name in enumerate(trained.names) if (requested == class_id).any()}


def class_shares(trained: TrainedClassifier, images: torch.Tensor) -> dict[str, float]:
    """The share of `images` read as each class (every class named; the shares sum to 1)."""
    if not len(images):
        raise DCGANError("class shares need at least one image")
    predicted = predicted_classes(trained, images)
    counts = torch.bincount(predicted, minlength=len(trained.names))
    return {name: count / len(images) for name, count in zip(trained.names, counts.tolist())}


def share_ratio(shares: dict[str, float]) -> float:
    """The largest class share over the smallest: 1 for perfectly even classes, inf when a
    class got no image at all."""
    smallest, largest = min(shares.values()), max(shares.values())
    return math.inf if smallest == 0 else largest / smallest


def attribute_accuracy(trained: TrainedClassifier, images: torch.Tensor,
                       requested_rows: torch.Tensor) -> dict[str, float]:
    """Per attribute name, the share of `images` read as having it exactly when requested
    (`requested_rows`: N x K of 0/1, columns in the classifier's attribute order)."""
    require_kind(trained, "attributes")
    requested = torch.as_tensor(requested_rows).float().cpu()
    if requested.shape != (len(images), len(trained.names)):
        raise DCGANError(f"requested attributes must be {len(images)} x {len(trained.names)} "
                         f"(one row per image, one 0/1 column per attribute: "
                         f"{', '.join(trained.names)}), not {tuple(requested.shape)}")
    if not len(images):
        raise DCGANError("attribute accuracy needs at least one image")
    agree = (predicted_attributes(trained, images) == (requested > 0.5).float()).float()
    return dict(zip(trained.names, agree.mean(dim=0).tolist()))


def requested_classes(trained: TrainedClassifier, requested_ids: torch.Tensor | Sequence[int],
                      n_images: int) -> torch.Tensor:
    """The requested class ids as a CPU LongTensor, checked against the images and classes."""
    require_kind(trained, "class")
    requested = torch.as_tensor(requested_ids).long().cpu().reshape(-1)
    if len(requested) != n_images:
        raise DCGANError(f"{len(requested)} requested classes for {n_images} images; give one "
                         "class id per image")
    if len(requested) and (requested.min() < 0 or requested.max() >= len(trained.names)):
        raise DCGANError(f"requested class ids must lie in 0..{len(trained.names) - 1} "
                         f"({', '.join(trained.names)}), not {requested.min()}..{requested.max()}")
    return requested


# ---------------------------------------------------------------------------------------------
# The classifier file


def data_fingerprint(images: torch.Tensor, labels: Labels) -> str:
    """A short digest of images (as uint8) and labels: a `source` that changes with the data."""
    digest = hashlib.sha256()
    pixels = images if images.dtype == torch.uint8 else to_uint8(images)
    digest.update(pixels.cpu().contiguous().numpy().tobytes())
    digest.update(labels.values.cpu().contiguous().numpy().tobytes())
    digest.update("\n".join((labels.kind, *labels.names)).encode())
    return digest.hexdigest()[:16]


def save_classifier(trained: TrainedClassifier, path: Path | str) -> None:
    """Write the classifier atomically as a plain dict (torch.load(weights_only=True))."""
    state = {key: value.detach().cpu() for key, value in trained.model.state_dict().items()}
    contents = {"format": FILE_FORMAT, "version": FILE_VERSION, "state_dict": state,
                "kind": trained.kind, "names": list(trained.names),
                "image_size": trained.image_size, "channels": trained.channels,
                "held_out_accuracy": trained.held_out_accuracy,
                "held_out_per_attribute": dict(trained.held_out_per_attribute),
                "held_out_count": trained.held_out_count,
                "settings": asdict(trained.settings), "source": trained.source}
    with atomic_path(Path(path)) as tmp:
        torch.save(contents, tmp)


def load_classifier(path: Path | str, expected_source: str | None = None
                    ) -> TrainedClassifier | None:
    """The classifier in `path` (in eval mode, on the CPU), or None when there is none to use:
    no file, a torn or foreign file, or one trained on another `source` than expected."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
        trained = classifier_from(contents)
    except UNREADABLE_FILE_ERRORS as error:
        log.warning("ignoring the label classifier file %s (%s: %s)", path,
                    type(error).__name__, error)
        return None
    if expected_source is not None and trained.source != expected_source:
        log.info("the label classifier in %s was trained on other data (%s, not %s)", path,
                 trained.source, expected_source)
        return None
    return trained


def classifier_from(contents: dict[str, Any]) -> TrainedClassifier:
    """Rebuild a TrainedClassifier from save_classifier's dict (KeyError/ValueError if not)."""
    if contents.get("format") != FILE_FORMAT or contents.get("version") != FILE_VERSION:
        raise ValueError(f"not a {FILE_FORMAT} file of version {FILE_VERSION}")
    settings = TrainingSettings(**contents["settings"])
    names = tuple(contents["names"])
    model = LabelClassifier(contents["channels"], contents["image_size"], len(names),
                            settings.width)
    model.load_state_dict(contents["state_dict"])
    model.eval()
    return TrainedClassifier(model, contents["kind"], names, contents["image_size"],
                             contents["channels"], float(contents["held_out_accuracy"]),
                             dict(contents["held_out_per_attribute"]),
                             int(contents["held_out_count"]), settings, contents["source"])


def classifier_for(path: Path | str, source: str, images: torch.Tensor, labels: Labels,
                   **train_kwargs: Any) -> TrainedClassifier:
    """The classifier cached in `path` if it was trained on `source` with these settings and
    fits these images and labels; else one trained now (train_classifier's keywords) and
    written there. A file that cannot be written only costs the training next time."""
    device = train_kwargs.get("device", "cpu")
    wanted = TrainingSettings(**{key: value for key, value in train_kwargs.items()
                                 if key != "device"})
    cached = load_classifier(path, expected_source=source)
    if cached is not None and fits(cached, images, labels, wanted):
        log.info("read the label classifier from %s", path)
        return move_to(cached, device)
    trained = train_classifier(images, labels, **train_kwargs)
    trained.source = source
    try:
        save_classifier(trained, path)
    except DCGANError as error:
        log.warning("could not cache the label classifier: %s", error)
    return trained


def fits(trained: TrainedClassifier, images: torch.Tensor, labels: Labels,
         settings: TrainingSettings) -> bool:
    """Whether a cached classifier reads these images and labels and was trained this way."""
    return (trained.kind == labels.kind and trained.names == tuple(labels.names)
            and trained.channels == images.shape[1] and trained.image_size == images.shape[-1]
            and trained.settings == settings)


def move_to(trained: TrainedClassifier, device: Device) -> TrainedClassifier:
    trained.model.to(device)
    return trained
