"""Score issue 12's study runs: every fifth epoch's checkpoint against the official CelebA test
partition (660 of the shared faces), as the generator each run samples with and as its raw
generator, each with BatchNorm's running statistics and with statistics re-estimated for the
weights (dcgan.sampling). Scores already in the results file are not computed again, so run it
as often as the study moves on.

    python scripts/study_faces_score.py                  # all runs in $STUDY_DIR (/work/study12)
    python scripts/study_faces_score.py --plot           # and the figure + table in docs/quality

Results: docs/quality/study12/scores.jsonl (one line per run, epoch and variant).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from dcgan.checkpoint import load_checkpoint
from dcgan.config import compose_config
from dcgan.data import build_dataset
from dcgan.evaluation import Evaluator
from dcgan.models import Architecture, Generator
from dcgan.sampling import recalibrate_batchnorm

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "quality" / "study12"
SHARED = Path(os.environ.get("DCGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
EPOCHS = range(5, 51, 5)
N_TEST = 660
SEED = 1234


def variants(state: dict) -> dict[str, Generator]:
    """name -> generator: the sampling weights (EMA when the run had one) and the raw ones,
    each with running and with re-estimated BatchNorm statistics."""
    arch = Architecture(**state["arch"])
    weights = {"raw": state["generator"]}
    if "generator_ema" in state:
        weights["ema"] = state["generator_ema"]
    made = {}
    for name, tensors in weights.items():
        for calibrated in (False, True):
            generator = Generator(arch)
            generator.load_state_dict(tensors)
            if calibrated:
                recalibrate_batchnorm(generator, arch.nz)
            made[f"{name}{'+bn' if calibrated else ''}"] = generator.eval()
    return made


def score(study: Path, results: Path) -> None:
    done = set()
    if results.is_file():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            done.add((row["run"], row["epoch"], row["variant"]))
    cfg = compose_config(["dataset=celeba", f"dataset.root={SHARED / 'celeba'}",
                          "dataset.split=test"])
    evaluator = Evaluator(build_dataset(cfg.dataset), N_TEST, 100, SEED, torch.device("cpu"))
    for run in sorted(p for p in study.iterdir() if (p / "checkpoints").is_dir()):
        for epoch in EPOCHS:
            path = run / "checkpoints" / f"epoch_{epoch:03d}.pt"
            if not path.is_file():
                continue
            state = load_checkpoint(path)
            for name, generator in variants(state).items():
                if (run.name, epoch, name) in done:
                    continue
                metrics = evaluator(generator)
                row = {"run": run.name, "epoch": epoch, "variant": name, **metrics}
                with results.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(os.environ.get("STUDY_DIR",
                                                                          "/work/study12")))
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    score(args.study, OUT / "scores.jsonl")


if __name__ == "__main__":
    main()
