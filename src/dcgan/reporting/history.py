"""A run's history read back from its TensorBoard events: every scalar over steps, the texts
the collapse guard and the non-finite recovery wrote (as markers), and how long it trained.

Reading the events (not the checkpoints) means any run can be reported on, old ones,
stopped ones and resumed ones included: TensorBoard's own reader applies the purges a resumed
run asked for, so each step appears once. A run logged only to metrics.csv is read from there.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dcgan.reporting.loggers.csv import CSV_FILE

# TensorBoard's event reader, slow to import, is imported where the events are read.

MARKER_TAGS = ("collapse", "nonfinite")  # text tags that mark an event on the curves


@dataclass(frozen=True)
class Marker:
    """Something the run said at a step: a collapse verdict, a rollback, a non-finite loss."""

    step: int
    kind: str  # "collapse" | "rollback" | "nonfinite"
    text: str


@dataclass
class RunHistory:
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # tag -> (step, value)
    markers: list[Marker] = field(default_factory=list)
    real_grid_png: Optional[bytes] = None  # samples/real as logged
    seconds: float = 0.0  # summed over the processes that trained (each wrote its own events)
    sessions: int = 0

    @property
    def last_step(self) -> int:
        return max((points[-1][0] for points in self.scalars.values() if points), default=0)


def read_history(run_dir: Path) -> RunHistory:
    """Everything the run logged; empty (no curves) when it logged nothing yet."""
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    if not files:
        return read_csv_history(run_dir / CSV_FILE)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0,
                                                           "images": 1})
    quiet = logging.getLogger("tensorboard")
    level, quiet.level = quiet.level, logging.WARNING  # its reader chats at INFO
    try:
        events.Reload()
    finally:
        quiet.setLevel(level)
    tags = events.Tags()
    history = RunHistory()
    for tag in tags.get("scalars", []):
        history.scalars[tag] = [(e.step, e.value) for e in events.Scalars(tag)]
    for tag in MARKER_TAGS:
        name = f"{tag}/text_summary"
        if name in tags.get("tensors", []):
            for event in events.Tensors(name):
                text = event.tensor_proto.string_val[0].decode("utf-8", "replace")
                history.markers.append(Marker(event.step, marker_kind(tag, text), text))
    history.markers.sort(key=lambda marker: marker.step)
    if "samples/real" in tags.get("images", []):
        history.real_grid_png = events.Images("samples/real")[-1].encoded_image_string
    history.seconds = sum(session_seconds(path) for path in files)
    history.sessions = len(files)
    return history


def marker_kind(tag: str, text: str) -> str:
    if tag == "nonfinite":
        return "nonfinite"
    return "rollback" if text.startswith("rolled back") else "collapse"


def session_seconds(events_file: Path) -> float:
    """From the first to the last event one process wrote (its writer opens as training
    starts, its last event is the last thing it logged)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    first = last = None
    try:
        for event in EventFileLoader(str(events_file)).Load():
            first = event.wall_time if first is None else first
            last = event.wall_time
    except Exception:  # a file cut short by a kill: what was read so far counts
        pass
    return (last - first) if first is not None else 0.0


def read_csv_history(path: Path) -> RunHistory:
    """The scalars of metrics.csv (logger=[csv] without tensorboard); no markers or timings."""
    history = RunHistory()
    if not path.is_file():
        return history
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row.pop("step"))
            for tag, value in row.items():
                if value not in ("", None) and not math.isnan(float(value)):
                    history.scalars.setdefault(tag, []).append((step, float(value)))
    return history
