"""What a conditional GAN is conditioned on, and the pieces that carry it into the networks.

`LabelSpace` names the labels (the classes by id, or the attributes by column). The networks
read a label as a float vector `y` [N, K]: one-hot for a class, 0/1 per attribute for
attributes, so one linear map serves both (one-hot times a matrix is an embedding).

`ConditionalBatchNorm2d` is G's BatchNorm when it is conditioned by projection: normalisation
without affine parameters, then a gain 1 + W_g y and a bias W_b y per channel (de Vries et
al., 2017; Miyato & Koyama, 2018). `FakeLabels` draws the labels generated images are asked
for: classes uniformly or at the data's frequencies; attributes as whole rows of real
attribute vectors, so that their correlations stay those of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from dcgan.errors import DCGANError

CONDITION_KINDS = ("none", "class", "attributes")
CONDITION_STYLES = ("concat", "projection")  # y joined to the inputs | cBN in G + projection in D
FAKE_LABEL_DRAWS = ("uniform", "data")
KEPT_ATTRIBUTE_ROWS = 10_000  # real attribute rows a checkpoint keeps to draw fake labels from


@dataclass(frozen=True)
class LabelSpace:
    """The labels of a conditional model: classes (`names` by id) or attributes (by column)."""

    kind: str  # "class" | "attributes"
    names: tuple[str, ...]

    @property
    def size(self) -> int:
        """K, the length of a label vector."""
        return len(self.names)

    def vectors(self, values: torch.Tensor) -> torch.Tensor:
        """Label values (class ids [N], or 0/1 attributes [N, K]) as float vectors [N, K]."""
        if self.kind == "class":
            return nn.functional.one_hot(values.long(), self.size).float()
        return values.float()

    def class_id(self, wanted: str) -> int:
        """A class by name or by id ("7", "cat", "3"); a DCGANError naming the known ones."""
        if self.kind != "class":
            raise DCGANError("this model is conditioned on attributes, not classes; use --attrs")
        if wanted in self.names:
            return self.names.index(wanted)
        if wanted.isdigit() and int(wanted) < self.size:
            return int(wanted)
        raise DCGANError(f"unknown class {wanted!r}; the model knows {', '.join(self.names)} "
                         f"(or ids 0-{self.size - 1})")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LabelSpace":
        return cls(kind=str(values["kind"]), names=tuple(str(name) for name in values["names"]))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d without affine parameters, then per-channel gain 1 + W_g y and bias W_b y.

    W_g starts at N(0, 0.02) (the DCGAN init of a BatchNorm weight around 1) and W_b at 0, so
    a fresh layer is as a fresh BatchNorm2d. No spectral norm on these embeddings."""

    def __init__(self, channels: int, label_size: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(label_size, channels, bias=False)
        self.bias = nn.Linear(label_size, channels, bias=False)
        nn.init.normal_(self.gain.weight, 0.0, 0.02)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(y)[:, :, None, None]
        return self.norm(x) * gain + self.bias(y)[:, :, None, None]


class FakeLabels:
    """The labels generated images are asked for, drawn from torch's global RNG on `device`
    (so a seeded run draws the same ones, and a resumed run continues their stream).

    Classes: uniform, or (`draw="data"`) at the data's class frequencies `counts`. Attributes:
    whole rows of `rows`, real attribute vectors."""

    def __init__(self, space: LabelSpace, draw: str = "uniform",
                 counts: Optional[torch.Tensor] = None, rows: Optional[torch.Tensor] = None,
                 device: torch.device = torch.device("cpu")):
        if space.kind == "attributes" and (rows is None or len(rows) == 0):
            raise DCGANError("attribute labels for generated images need real attribute rows")
        if space.kind == "class" and draw == "data" and counts is None:
            raise DCGANError("condition.sample=data needs the class counts of the data set")
        self.space, self.draw_mode = space, draw
        self.counts = counts.long() if counts is not None else None
        # attribute rows as uint8 (a tenth of the bytes) in checkpoints, float on the device
        self.rows = rows.to(torch.uint8) if rows is not None else None
        self._probabilities = (self.counts.double() / self.counts.sum()).float().to(device) \
            if self.counts is not None and draw == "data" else None
        self._rows_on_device = self.rows.float().to(device) if self.rows is not None else None
        self.device = device

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """n label values on the device: class ids [n] (long) or attribute rows [n, K] (float
        0/1); from torch's global RNG, or from `generator` (a CPU one: a private stream)."""
        where = self.device if generator is None else torch.device("cpu")
        if self.space.kind == "attributes":
            picks = torch.randint(len(self.rows), (n,), device=where, generator=generator)
            return self._rows_on_device.index_select(0, picks.to(self.device))
        if self._probabilities is not None:
            values = torch.multinomial(self._probabilities.to(where), n, replacement=True,
                                       generator=generator)
        else:
            values = torch.randint(self.space.size, (n,), device=where, generator=generator)
        return values.to(self.device)

    def vectors(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """n drawn labels as the float vectors the networks read [n, K]."""
        return self.space.vectors(self.draw(n, generator))

    def every_class(self, per_class: int) -> torch.Tensor:
        """Class ids 0, 0, ..., 1, 1, ...: `per_class` of each (a grid with a row per class)."""
        return torch.arange(self.space.size, device=self.device).repeat_interleave(per_class)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the label space, how fakes draw, and what they draw from."""
        state: dict[str, Any] = {**self.space.as_dict(), "draw": self.draw_mode}
        if self.counts is not None:
            state["counts"] = self.counts.cpu()
        if self.rows is not None:
            state["rows"] = self.rows.cpu()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> "FakeLabels":
        return cls(LabelSpace.from_dict(state), str(state.get("draw", "uniform")),
                   state.get("counts"), state.get("rows"), device)


def fake_labels_from_data(space: LabelSpace, values: torch.Tensor, draw: str,
                          device: torch.device, seed: int = 0) -> FakeLabels:
    """FakeLabels for a data set's label values: its class counts, or (attributes) up to
    KEPT_ATTRIBUTE_ROWS of its rows, picked with a private RNG when there are more."""
    if space.kind == "class":
        return FakeLabels(space, draw, counts=torch.bincount(values.long(), minlength=space.size),
                          device=device)
    rows = values
    if len(rows) > KEPT_ATTRIBUTE_ROWS:
        picks = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
        rows = rows[picks[:KEPT_ATTRIBUTE_ROWS]]
    return FakeLabels(space, draw, rows=rows, device=device)


def parse_attribute_settings(space: LabelSpace, spec: Sequence[str]) -> dict[int, float]:
    """`["Smiling", "-Eyeglasses"]` -> {column: 1.0, column: 0.0}; an unknown name is a
    DCGANError naming the model's attributes."""
    if space.kind != "attributes":
        raise DCGANError("--attrs is for a model conditioned on attributes; this one is "
                         "conditioned on classes: use --class")
    settings = {}
    for item in spec:
        name, value = (item[1:], 0.0) if item.startswith("-") else (item.lstrip("+"), 1.0)
        if name not in space.names:
            raise DCGANError(f"the model has no attribute {name!r}; it knows "
                             f"{', '.join(space.names)}")
        settings[space.names.index(name)] = value
    return settings


def with_labels(forward: Callable[..., torch.Tensor], y: Optional[torch.Tensor]
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """`forward` with its label vectors bound (itself when unconditional, y None): what the
    penalties call as D(images)."""
    if y is None:
        return forward
    return lambda images: forward(images, y)
