"""Tables and sample grids of the stable-vs-textbook study, from quality_experiments.sh's runs.

    python studies/stable-vs-textbook/quality_report.py [--runs runs/quality] [--out DIR]

For each group (small, full, mnist) it reads the runs' TensorBoard events (metrics/swd/mean and
metrics/diversity at each evaluation) and writes <group>.md into --out (default: this script's
folder) with one row per evaluation, plus copies of a few sample grids. The detector column
replays the logged windows through the current collapse detector (the run's own collapse.*
settings); a run whose detector acted (a rollback) is reported from the messages it logged.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dcgan.config import from_plain_dict, guard_settings
from dcgan.training.collapse import CollapseDetector

OUT = Path(__file__).resolve().parent
GROUPS = {"small": ("textbook", "stable", "rollback"), "full": ("textbook", "stable"),
          "mnist": ("textbook", "stable", "rollback")}


def read_run(run_dir: Path) -> dict:
    """Evaluations by step, the detector's messages, the batch size and run time."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    metrics: dict[int, dict[str, float]] = {}
    for tag in ("metrics/swd/mean", "metrics/diversity"):
        for event in events.Scalars(tag) if tag in tags["scalars"] else []:
            metrics.setdefault(event.step, {})[tag.split("/", 1)[1]] = event.value
    verdicts = []
    for tag in tags["tensors"]:
        for event in events.Tensors(tag):
            verdicts += [(when_said(event.step, text.decode()), text.decode())
                         for text in event.tensor_proto.string_val]
    if not any(text.startswith("rolled back") for _, text in verdicts):
        verdicts = replay_detector(events, run_dir)  # today's detector on what was logged
    # <run>.time, and <run>.resume.time where a run was continued with resume=... epochs=...
    words = [time_file.read_text().split() for time_file in run_dir.parent.glob(f"{run_dir.name}.*time")]
    seconds = sum(float(w[0]) for w in words if w) or None  # a file is empty while running
    return {"metrics": metrics, "verdicts": sorted(verdicts, key=lambda v: (v[0], v[1].startswith("rolled back"))), "seconds": seconds}


def when_said(logged_step: int, text: str) -> int:
    """A rollback is logged at the step it went back to; it belongs with the verdict that
    caused it ("... after d_wins at step 70 ...")."""
    match = re.search(r"after \w+ at step (\d+)", text) if text.startswith("rolled back") else None
    return int(match.group(1)) if match else logged_step


def replay_detector(events: EventAccumulator, run_dir: Path) -> list[tuple[int, str]]:
    """Feed the logged windows and evaluations, in the order training saw them, to the
    collapse detector with the run's own settings; a run that rolled back is read as logged."""
    cfg = from_plain_dict(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")))
    detector = CollapseDetector(guard_settings(cfg).detector)
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)}
               for tag in ("loss/d", "loss/g", "d/real_prob", "d/fake_prob", "metrics/diversity")
               if tag in events.Tags()["scalars"]}
    window_steps = sorted(scalars.get("loss/g", {}))
    diversity = scalars.get("metrics/diversity", {})
    said = []
    for step in sorted(set(window_steps) | set(diversity)):
        if step in scalars.get("loss/g", {}):
            values = [scalars[tag][step] for tag in ("loss/d", "loss/g", "d/real_prob",
                                                      "d/fake_prob")]
            verdict = detector.observe(step, *values)
            if verdict:
                said.append((step, verdict.message))
        if step in diversity:
            verdict = detector.observe_diversity(step, diversity[step])
            if verdict:
                said.append((step, verdict.message))
    return said


def signal_of(text: str) -> str:
    if text.startswith("rolled back"):
        return "rollback"
    match = re.search(r"collapse \((\w+)\)", text)
    return match.group(1) if match else "collapse"


def verdict_between(run: dict, after: int, step: int) -> str:
    """The signals the detector raised in (after, step], or 'healthy' when it said nothing:
    a run that recovers from an early alarm reads healthy again in the later rows."""
    said = []
    for when, text in run["verdicts"]:
        signal = signal_of(text)
        if after < when <= step and signal not in said:
            said.append(signal)
    return ", ".join(said) if said else "healthy"


def table(group: str, runs: dict[str, dict], images_per_step: int) -> str:
    names = list(runs)
    head = ["step", "images seen"] + [f"SWD {n}" for n in names] + \
        [f"diversity {n}" for n in names] + [f"detector {n} (since the row before)" for n in names]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    steps = sorted(set().union(*(run["metrics"] for run in runs.values())))
    for previous, step in zip([-1] + steps, steps):
        cells = [str(step), f"{step * images_per_step:,}"]
        for key in ("swd/mean", "diversity"):
            for run in runs.values():
                value = run["metrics"].get(step, {}).get(key)
                cells.append("" if value is None else f"{value:.1f}" if key == "swd/mean"
                             else f"{value:.2f}")
        cells += [verdict_between(run, previous, step) for run in runs.values()]
        rows.append("| " + " | ".join(cells) + " |")
    times = ", ".join(f"{name} {run['seconds'] / 60:.1f} min" for name, run in runs.items()
                      if run["seconds"])
    verdict_lines = [f"- {name}, step {step}: {text}" for name, run in runs.items()
                     for step, text in run["verdicts"]]
    return "\n".join([f"### {group}", "", *rows, "", f"Wall time: {times}." if times else "",
                      "", "Detector messages:", *(verdict_lines or ["- none"]), ""])


def copy_grids(run_dir: Path, out: Path, prefix: str, picks: int = 3) -> list[str]:
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    if not grids:
        return []
    chosen = {grids[0], grids[len(grids) // 2], grids[-1]} if len(grids) >= picks else set(grids)
    names = []
    for grid in sorted(chosen):
        name = f"{prefix}-{grid.name}"
        shutil.copyfile(grid, out / name)
        names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path,
                        default=Path(os.environ.get("DCGAN_QUALITY_RUNS", "runs/quality")),
                        help="the folder quality_experiments.sh trained in (default "
                             "$DCGAN_QUALITY_RUNS, else runs/quality)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where <group>.md and the grids go (default: this script's folder)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for group, kinds in GROUPS.items():
        runs = {kind: read_run(args.runs / f"{group}-{kind}") for kind in kinds
                if (args.runs / f"{group}-{kind}").is_dir()}
        if not runs:
            continue
        text = table(group, runs, args.batch_size)
        grids = [name for kind in runs
                 for name in copy_grids(args.runs / f"{group}-{kind}", args.out, f"{group}-{kind}")]
        text += "\nSample grids (fixed noise): " + ", ".join(grids) + "\n"
        (args.out / f"{group}.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
