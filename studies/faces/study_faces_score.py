"""Score the faces study's runs against the 660 CelebA test faces, every fifth epoch.

Every fifth epoch's checkpoint is scored against the official CelebA test partition (660 of
the shared faces), as the generator each run samples with and as its raw generator, each with
BatchNorm's running statistics and with statistics re-estimated for the weights
(dcgan.nets.batchnorm). Scores already in the results file are not computed again, so run it as
often as the study moves on.

    python studies/faces/study_faces_score.py --study DIR --data DIR   # score every run in --study
    python studies/faces/study_faces_score.py --plot                  # the figure + table
    python studies/faces/study_faces_score.py --target RECIPE         # the study's target per seed
    python studies/faces/study_faces_score.py --study DIR --data DIR --out studies/bf16 --last-epoch 30
    python studies/faces/study_faces_score.py --out studies/bf16 --within fp32   # the bf16 test

--study defaults to $STUDY_DIR and --data (the folder holding celeba/) to $DCGAN_SHARED_DATA;
scoring needs both, while --plot, --target and --within read only the results. The results are
scores.jsonl in --out (default: this script's folder), one line per run, epoch and variant;
--plot writes curves.png and table.md beside it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from dcgan.config import compose_config
from dcgan.data.datasets import build_dataset
from dcgan.nets.batchnorm import recalibrate_batchnorm
from dcgan.nets.models import Architecture, Generator
from dcgan.quality.evaluator import Evaluator
from dcgan.store.checkpoints import load_checkpoint

OUT = Path(__file__).resolve().parent
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


def score(study: Path, shared: Path, results: Path, last_epoch: int) -> None:
    done = set()
    if results.is_file():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            done.add((row["run"], row["epoch"], row["variant"]))
    cfg = compose_config(["dataset=celeba", f"dataset.root={shared / 'celeba'}",
                          "dataset.split=test"])
    evaluator = Evaluator(build_dataset(cfg.dataset), N_TEST, 100, SEED, torch.device("cpu"))
    for run in sorted(p for p in study.iterdir() if (p / "checkpoints").is_dir()):
        for epoch in (e for e in EPOCHS if e <= last_epoch):
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


SAMPLING = {"ema+bn", "raw+bn"}  # what each run samples with by default now (BN re-estimated)


def best_rows(results: Path) -> dict[str, dict[int, dict]]:
    """run -> epoch -> the row of the generator the run samples with: its moving average
    when it has one, else the raw generator; BatchNorm statistics re-estimated (the default)."""
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    table: dict[str, dict[int, dict]] = {}
    for row in rows:
        has_ema = any(r["run"] == row["run"] and r["variant"] == "ema+bn" for r in rows)
        if row["variant"] == ("ema+bn" if has_ema else "raw+bn"):
            table.setdefault(row["run"], {})[row["epoch"]] = row
    return table


def plot(results: Path) -> None:
    """The SWD and diversity curves of every run (curves.png) and the table (table.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = best_rows(results)
    fig, (swd, diversity) = plt.subplots(1, 2, figsize=(15, 4.5))
    # one colour per recipe (its seeds alike), dashed for the textbook, dotted for seed 2+
    recipes = sorted({run.split("_seed")[0] for run in table})
    colours = {recipe: plt.get_cmap("tab10")(i % 10) for i, recipe in enumerate(recipes)}
    for run, epochs in sorted(table.items()):
        xs = sorted(epochs)
        style = (":" if "_seed" in run else "--" if run.startswith(("textbook", "fp32"))
                 else "-")
        colour = colours[run.split("_seed")[0]]
        swd.plot(xs, [epochs[e]["swd/mean"] for e in xs], style, marker="o", markersize=3,
                 label=run, color=colour)
        diversity.plot(xs, [epochs[e]["diversity"] for e in xs], style, marker="o",
                       markersize=3, label=run, color=colour)
    swd.set_yscale("log")
    swd.set_ylabel("SWD x1e3 vs the 660 test faces (lower is better)")
    diversity.set_ylabel("diversity ratio (1 = as varied as the real faces)")
    diversity.axhspan(0.9, 1.1, color="grey", alpha=0.15)
    for axis in (swd, diversity):
        axis.set_xlabel("epoch (4,657 training faces, batch 128)")
        axis.grid(alpha=0.3)
    handles, labels = swd.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(results.parent / "curves.png", dpi=80)
    epochs = sorted({e for rows in table.values() for e in rows})
    lines = ["| run | " + " | ".join(str(e) for e in epochs) + " |",
             "| --- | " + " | ".join("---:" for _ in epochs) + " |"]
    for run, rows in sorted(table.items()):
        lines.append(f"| {run} | " + " | ".join(
            f"{rows[e]['swd/mean']:.1f} ({rows[e]['diversity']:.2f})" if e in rows else ""
            for e in epochs) + " |")
    (results.parent / "table.md").write_text(
        "SWD x1e3 against the 660 test faces (diversity in brackets), every fifth epoch, of the "
        "generator each run samples with (its moving average when it has one, else G), with "
        "BatchNorm statistics re-estimated for its weights (the default). All four variants of "
        "every checkpoint are in scores.jsonl.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def distance_outside(value: float, low: float, high: float) -> float:
    """0 inside [low, high], else how far outside relative to the nearest end (+ above)."""
    if value > high:
        return (value - high) / high
    if value < low:
        return (value - low) / low
    return 0.0


def within(results: Path, prefix: str) -> None:
    """Per epoch, the spread of the runs named PREFIX* (e.g. the fp32 seeds) and whether each
    other run's SWD lies inside it (else by how much it is outside, relative to the nearest)."""
    table = best_rows(results)
    band = {run: rows for run, rows in table.items() if run.startswith(prefix)}
    others = {run: rows for run, rows in table.items() if not run.startswith(prefix)}
    epochs = sorted(set.intersection(*(set(rows) for rows in table.values())))
    print(f"| epoch | {prefix} runs (min-max) | " + " | ".join(others) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in others) + " |")
    for epoch in epochs:
        values = [rows[epoch]["swd/mean"] for rows in band.values()]
        low, high = min(values), max(values)
        cells = []
        for rows in others.values():
            value = rows[epoch]["swd/mean"]
            outside = distance_outside(value, low, high)
            cells.append(f"{value:.1f}" + (" (inside)" if outside == 0 else f" ({outside:+.0%})"))
        print(f"| {epoch} | {low:.1f}-{high:.1f} | " + " | ".join(cells) + " |")


def target(results: Path, recipe: str) -> None:
    """The faces study's target for `recipe`, at each seed against the textbook from that seed
    (runs NAME and NAME_seedN): the textbook's epoch-50 SWD reached by epoch 25, at least 20%
    below the textbook at epoch 50, never worse than it from epoch 10 on, and diversity in
    [0.9, 1.1] (from epoch 10 on, and from epoch 25 on)."""
    table = best_rows(results)
    seeds = sorted({1} | {int(run.rsplit("_seed", 1)[1]) for run in table
                          if run.startswith(recipe + "_seed")})
    for seed in seeds:
        suffix = "" if seed == 1 else f"_seed{seed}"
        ours, textbook = table.get(recipe + suffix, {}), table.get("textbook" + suffix, {})
        if 50 not in ours or 50 not in textbook:
            print(f"{recipe}, seed {seed}: not scored to epoch 50 yet")
            continue
        swd = {epoch: row["swd/mean"] for epoch, row in ours.items()}
        base = {epoch: row["swd/mean"] for epoch, row in textbook.items()}
        worse = {e: f"{swd[e] / base[e] - 1:+.0%}" for e in sorted(swd)
                 if e >= 10 and swd[e] > base[e]}
        diversity = {e: round(row["diversity"], 2) for e, row in ours.items()}
        outside = lambda start: {e: d for e, d in sorted(diversity.items())  # noqa: E731
                                 if e >= start and not 0.9 <= d <= 1.1}
        print(f"{recipe}, seed {seed}:")
        print(f"  epoch 25: {swd[25]:.1f} against the textbook's epoch 50: {base[50]:.1f} "
              f"({'met' if swd[25] <= base[50] else f'missed by {swd[25] / base[50] - 1:.0%}'})")
        print(f"  epoch 50: {swd[50]:.1f}, {1 - swd[50] / base[50]:.0%} below the textbook's "
              f"{base[50]:.1f} ({'met' if swd[50] <= 0.8 * base[50] else 'missed: 20% wanted'})")
        print(f"  worse than the textbook from epoch 10 on: {worse or 'never (met)'}")
        print(f"  diversity outside [0.9, 1.1]: from epoch 10 {outside(10) or 'none'}; "
              f"from epoch 25 {outside(25) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=os.environ.get("STUDY_DIR"),
                        help="the folder of the runs to score (default $STUDY_DIR)")
    parser.add_argument("--data", type=Path, default=os.environ.get("DCGAN_SHARED_DATA"),
                        help="the folder holding celeba/ with list_eval_partition.txt "
                             "(default $DCGAN_SHARED_DATA)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="folder of scores.jsonl, curves.png and table.md")
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--last-epoch", type=int, default=50, help="score epochs up to this one")
    parser.add_argument("--within", metavar="PREFIX",
                        help="compare every run with the spread of the runs named PREFIX*")
    parser.add_argument("--target", metavar="RECIPE",
                        help="the study's target for RECIPE (and RECIPE_seedN) per seed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.plot:
        plot(args.out / "scores.jsonl")
    elif args.target:
        target(args.out / "scores.jsonl", args.target)
    elif args.within:
        within(args.out / "scores.jsonl", args.within)
    else:
        if args.study is None or args.data is None:
            parser.error("scoring needs the runs and the test faces: --study DIR (or STUDY_DIR) "
                         "and --data DIR holding celeba/ (or DCGAN_SHARED_DATA)")
        score(Path(args.study), Path(args.data), args.out / "scores.jsonl", args.last_epoch)


if __name__ == "__main__":
    main()
