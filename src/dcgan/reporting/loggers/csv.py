"""RUN_DIR/metrics.csv: one row per logged window and per evaluation, one column per tag (the
TensorBoard names); a tag seen for the first time adds a column (the file is rewritten then).
A resumed run drops the rows of steps it trains again, as TensorBoard's purge does."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from dcgan.files.atomic import write_atomic
from dcgan.reporting.loggers.base import Logger, tag_of

CSV_FILE = "metrics.csv"


class CSVLogger(Logger):
    def __init__(self, run_dir: Path, purge_step: Optional[int] = None):
        self.path = run_dir / CSV_FILE
        self.columns: list[str] = ["step"]
        self.rows: list[dict[str, str]] = []
        if self.path.is_file():
            self._read_kept(purge_step)
            self._rewrite()

    def _read_kept(self, purge_step: Optional[int]) -> None:
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            self.columns = list(reader.fieldnames or ["step"])
            self.rows = [row for row in reader
                         if purge_step is None or int(row["step"]) < purge_step]

    def scalars(self, step: int, values: dict[str, float]) -> None:
        row = {"step": str(step), **{tag_of(name): f"{value:.7g}" for name, value in values.items()}}
        self.rows.append(row)
        new = [column for column in row if column not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)

    def _rewrite(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.path, buffer.getvalue().encode())
