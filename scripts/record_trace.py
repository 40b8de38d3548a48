"""Turn one run's TensorBoard scalars into a small CSV trace: step,loss_d,loss_g,real_prob,fake_prob.

The collapse detector's tests replay these traces (tests/data/traces/). Usage:

    python scripts/record_trace.py RUN_DIR OUT.csv [--every K] [--comment "dcgan-train ..."]

RUN_DIR is a dcgan-train run directory (or any folder holding its events.out.tfevents.* files).
Each row is one logging window (the mean over `log_every` steps, plus the end-of-epoch window).
`--every K` keeps every K-th row (and always the last) to keep a long trace to a few KB; thin
only by a factor that leaves several rows per `patience` windows, or the replay changes.
`--comment` lines go at the top of the file as `# ...` (the command, its runtime, what the
samples looked like), so the trace says where it came from.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {"loss_d": "loss/d", "loss_g": "loss/g", "real_prob": "d/real_prob",
        "fake_prob": "d/fake_prob"}
COLUMNS = ("step", *TAGS)


def read_scalars(run_dir: Path) -> list[dict[str, float]]:
    """One row per logged step that has all four tags, in step order."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0 = keep every event
    events.Reload()
    available = set(events.Tags()["scalars"])
    missing = [tag for tag in TAGS.values() if tag not in available]
    if missing:
        raise SystemExit(f"{run_dir}: no TensorBoard scalars {missing}; is it a dcgan-train run "
                         "directory that logged at least one window?")
    by_step: dict[int, dict[str, float]] = {}
    for column, tag in TAGS.items():
        for event in events.Scalars(tag):  # a resumed run may rewrite a step: the last one wins
            by_step.setdefault(event.step, {})[column] = event.value
    return [{"step": step, **values} for step, values in sorted(by_step.items())
            if len(values) == len(TAGS)]


def thin(rows: list[dict[str, float]], every: int) -> list[dict[str, float]]:
    if every <= 1 or not rows:
        return rows
    kept = rows[::every]
    return kept if kept[-1] is rows[-1] else [*kept, rows[-1]]


def write_trace(rows: list[dict[str, float]], out: Path, comments: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        for line in comments:
            handle.write(f"# {line}\n")
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([int(row["step"])] + [f"{row[c]:.6g}" for c in TAGS])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=int, default=1, help="keep every K-th window")
    parser.add_argument("--comment", action="append", default=[],
                        help="a line for the top of the CSV (repeatable)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir} is not a directory")
    rows = thin(read_scalars(args.run_dir), args.every)
    write_trace(rows, args.out, args.comment)
    print(f"{args.out}: {len(rows)} windows, steps {rows[0]['step']:.0f}..{rows[-1]['step']:.0f}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
