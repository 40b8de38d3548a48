"""Score the conditional study's runs: SWD of 1,000 samples of each run's last checkpoint (the
generator it samples with) against real images, and what a classifier of real images reads in
them: the accuracy at the class each sample was asked for (conditional runs) or the class
shares (unconditional runs).

    python studies/conditional/score.py --study DIR [--out studies/conditional]

Digits are compared with the bundled MNIST test digits they trained on (classifier: trained on
them too, 10% held out); CIFAR-10 runs with the 1,000 held-out images of
studies/conditional/cifar_split.py (classifier: trained on the 9,000 training images, 10% of
them held out). A conditional run is asked for the labels of the real images it is compared
with. Results: results.jsonl in --out, one line per run, and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from dcgan.config import compose_config
from dcgan.data.datasets import build_dataset
from dcgan.data.labels import Labels
from dcgan.nets.conditioning import LabelSpace
from dcgan.nets.models import in_mode
from dcgan.quality.classifier import (
    class_shares,
    classifier_for,
    data_fingerprint,
    gan_test_accuracy,
    share_ratio,
)
from dcgan.quality.evaluator import labelled_images
from dcgan.quality.metrics import compute_metrics
from dcgan.store.checkpoints import load_checkpoint, load_generator

OUT = Path(__file__).resolve().parent
N, SEED = 1000, 1234


def real_sets(study: Path, name: str) -> tuple[tuple, tuple]:
    """((train images, labels), (compared images, labels)) for a run's data set."""
    if name.startswith("cifar"):
        parts = []
        for part in ("train", "held"):
            cfg = compose_config(["dataset=cifar10", f"dataset.root={study / 'cifar10' / part}",
                                  "dataset.image_size=32"])
            parts.append(labelled_images(build_dataset(cfg.dataset, labels="class")))
        return parts[0], parts[1]
    cfg = compose_config(["+experiment=quickstart"])
    digits = labelled_images(build_dataset(cfg.dataset, labels="class"))
    return digits, digits


def samples(run: Path, compared: tuple[torch.Tensor, Labels]) -> torch.Tensor:
    generator = load_generator(run / "checkpoints" / "last.pt", torch.device("cpu"))
    noise = torch.randn(N, generator.arch.nz, 1, 1, generator=torch.Generator().manual_seed(SEED))
    labels = compared[1].values[:N]
    with torch.no_grad(), in_mode(generator, training=False):
        if not generator.arch.conditional:
            return generator(noise)
        space = LabelSpace(compared[1].kind, compared[1].names)
        return generator(noise, space.vectors(labels))


def score(study: Path, run: Path) -> dict:
    train, compared = real_sets(study, run.name)
    classifier = classifier_for(study / f"classifier-{run.name.split('_')[0]}.pt",
                                data_fingerprint(*train), *train)
    real = compared[0][:N].float() / 127.5 - 1
    fake = samples(run, compared)
    metrics = compute_metrics(real, fake, seed=SEED)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    row = {"run": run.name, "epoch": state["epoch"], "swd": metrics["swd/mean"],
           "diversity": metrics["diversity"], "classifier": classifier.held_out_accuracy}
    if state["arch"].get("condition", "none") != "none":
        row["class_accuracy"] = gan_test_accuracy(classifier, fake, compared[1].values[:N])
    else:
        shares = class_shares(classifier, fake)
        row.update(share_ratio=share_ratio(shares), share_min=min(shares.values()),
                   share_max=max(shares.values()))
    row["real_share_ratio"] = share_ratio(class_shares(classifier, real))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=os.environ.get("STUDY_DIR"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", nargs="*", default=None,
                        help="score only these runs (the other rows of results.jsonl stay)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = args.out / "results.jsonl"
    rows = []  # with --runs, the other runs' rows of results.jsonl are kept
    if args.runs and results.is_file():
        rows = [row for row in map(json.loads, results.read_text().splitlines())
                if row["run"] not in args.runs]
    for run in sorted(args.study.iterdir()):
        wanted = args.runs is None or run.name in args.runs
        if wanted and (run / "checkpoints" / "last.pt").is_file() and \
                run.name.startswith(("digits", "cifar")):
            rows.append(score(args.study, run))
            print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda row: row["run"])
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
