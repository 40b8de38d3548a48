"""Hydra multirun sweeps: one table of every job's overrides and final metrics.

    dcgan-train -m lr=1e-4,2e-4 model.ngf=32,64 epochs=5

Each job trains in SWEEP_DIR/<job number>/ and writes summary.json there; when the sweep
ends, this callback writes SWEEP_DIR/summary.csv and SWEEP_DIR/summary.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
METRIC_COLUMNS = ("epoch", "step", "seconds", "loss_d", "loss_g", "real_prob", "fake_prob",
                  "img_per_s")


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder: its number, overrides, final metrics (or its status)."""
    rows = []
    job_dirs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name))
    for job_dir in job_dirs:
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
        row: dict[str, Any] = {"job": int(job_dir.name), "overrides": " ".join(overrides)}
        summary = job_dir / SUMMARY_FILE
        if summary.is_file():
            row.update(json.loads(summary.read_text()))
            row.setdefault("status", "finished")  # written before summaries had a status
        else:
            row["status"] = "failed or stopped"
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns = ["job", "overrides", "status", *METRIC_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    columns = ["job", "overrides", "status", *METRIC_COLUMNS]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(column, "")) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    (sweep_dir / "summary.csv").write_text(to_csv(rows))
    (sweep_dir / "summary.md").write_text(to_markdown(rows))
    return rows


class SweepSummary(Callback):
    """Registered in train.yaml (hydra.callbacks); acts only at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_summary(sweep_dir)
            log.info("sweep summary of %d job(s): %s", len(rows), sweep_dir / "summary.md")
