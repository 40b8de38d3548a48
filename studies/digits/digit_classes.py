"""Which digits a generator draws, and how evenly: a classifier reads 2,000 samples.

    python studies/digits/digit_classes.py RUN_DIR [RUN_DIR ...] --data DIR [--epochs 5,10]

The classifier (two convolutions and a linear layer) is trained on 8,000 of the 10,000 labelled
MNIST test digits in DIR/mnist (--data, or $DCGAN_SHARED_DATA) and checked on the other 2,000
(its accuracy is printed); it is trained once and kept in --classifier (default
$DIGITS_CACHE/classifier.pt, else classifier.pt beside the first run directory).
Samples are drawn from each named epoch's checkpoint (the generator the run samples with, its
BatchNorm statistics as saved), from noise seed 0, shrunk to 28x28 as MNIST is. Each result
is one JSON line, also appended to --results (default classes.jsonl beside this script): the
share of each class, the commonest over the rarest, and the share the classifier is unsure of
(top probability under 0.5).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan.nets.latents import batch_latents
from dcgan.store.checkpoints import load_generator

RESULTS = Path(__file__).resolve().parent / "classes.jsonl"
N_SAMPLES, HELD_OUT = 2000, 2000


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def labelled_digits(shared: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 MNIST test digits in [-1, 1] (N x 1 x 28 x 28) and their labels."""
    images = read_idx(shared / "mnist" / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = read_idx(shared / "mnist" / "t10k-labels-idx1-ubyte.gz", 8)
    pixels = torch.from_numpy(images.copy()).float().div(127.5).sub(1)
    return pixels, torch.from_numpy(labels.copy()).long()


def classifier() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 14 x 14
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 7 x 7
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 10))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(images).argmax(1) == labels).float().mean().item()


def trained_classifier(shared: Path, cache: Path) -> nn.Module:
    model = classifier()
    if cache.is_file():
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval()
    torch.manual_seed(0)
    images, labels = labelled_digits(shared)
    train_x, train_y = images[HELD_OUT:], labels[HELD_OUT:]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(6):
        model.train()
        for batch in torch.randperm(len(train_x)).split(64):
            shifted = torch.roll(train_x[batch], shifts=tuple(torch.randint(-2, 3, (2,)).tolist()),
                                 dims=(2, 3))  # a little translation: generated digits wander
            loss = F.cross_entropy(model(shifted), train_y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        print(f"classifier epoch {epoch + 1}: held-out accuracy "
              f"{accuracy(model, images[:HELD_OUT], labels[:HELD_OUT]):.4f}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


def class_shares(model: nn.Module, checkpoint: Path, ema: bool = True) -> dict:
    generator = load_generator(checkpoint, torch.device("cpu"), ema=ema)
    with torch.no_grad():
        samples = torch.cat([generator(z) for z in
                             batch_latents(N_SAMPLES, generator.arch.nz, 0).split(500)])
    return shares_of(model, F.interpolate(samples, size=(28, 28), mode="bilinear",
                                          antialias=True))


def shares_of(model: nn.Module, digits: torch.Tensor) -> dict:
    """The classes the classifier reads in N x 1 x 28 x 28 digits in [-1, 1]."""
    with torch.no_grad():
        probabilities = model(digits).softmax(1)
    counts = torch.bincount(probabilities.argmax(1), minlength=10).double()
    shares = (counts / len(digits)).tolist()
    return {"shares": [round(s, 4) for s in shares], "min_share": round(min(shares), 4),
            "max_share": round(max(shares), 4),
            "max_over_min": round(max(shares) / min(shares), 2) if min(shares) else None,
            "unsure": round((probabilities.max(1).values < 0.5).double().mean().item(), 4)}


def classifier_path(given: Path | None, first_run: Path) -> Path:
    """--classifier, else $DIGITS_CACHE/classifier.pt, else classifier.pt beside the runs."""
    if given is not None:
        return given
    folder = os.environ.get("DIGITS_CACHE")
    return (Path(folder) if folder else first_run.resolve().parent) / "classifier.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=os.environ.get("DCGAN_SHARED_DATA"),
                        help="the folder holding mnist/ with the labelled test digits "
                             "(t10k-*-idx*-ubyte.gz); default $DCGAN_SHARED_DATA")
    parser.add_argument("--classifier", type=Path, default=None,
                        help="where the trained classifier is kept (default "
                             "$DIGITS_CACHE/classifier.pt, else beside the first run directory)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the JSON-lines file each result is appended to")
    parser.add_argument("--epochs", default="5,10")
    parser.add_argument("--raw", action="store_true",
                        help="the raw generator instead of the moving average (when there is one)")
    args = parser.parse_args()
    if args.data is None:
        parser.error("say where the labelled MNIST digits are: --data DIR (holding mnist/) "
                     "or DCGAN_SHARED_DATA=DIR")
    torch.set_num_threads(1)
    model = trained_classifier(Path(args.data), classifier_path(args.classifier, args.runs[0]))
    images, labels = labelled_digits(Path(args.data))
    print(f"classifier held-out accuracy {accuracy(model, images[:HELD_OUT], labels[:HELD_OUT]):.4f}")
    # the yardstick: what the classifier reads in the 2,000 held-out real digits
    print(json.dumps({"run": "real held-out digits", "n": HELD_OUT,
                      **shares_of(model, images[:HELD_OUT])}))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        for epoch in (int(e) for e in args.epochs.split(",")):
            path = run / "checkpoints" / f"epoch_{epoch:03d}.pt"
            if not path.is_file():
                continue
            row = {"run": run.name, "epoch": epoch, "n": N_SAMPLES,
                   "generator": "raw" if args.raw else "sampling",
                   **class_shares(model, path, ema=not args.raw)}
            print(json.dumps(row), flush=True)
            with args.results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
