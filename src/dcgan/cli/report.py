"""`dcgan-report RUN_DIR`: write (or rewrite) a run's report.html (dcgan.reporting.page)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from dcgan.errors import ArgumentParser, reports_errors

log = logging.getLogger(__name__)


@reports_errors
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = ArgumentParser(prog="dcgan-report", description=(
        "Write RUN_DIR/report.html: curves, sample grids, checkpoints, commands and config of "
        "one dcgan-train run, in one self-contained page."))
    parser.add_argument("run_dir", type=Path, help="the run directory (runs/<dataset>/<time>)")
    args = parser.parse_args(argv)
    from dcgan.reporting.page import write_report  # torch, TensorBoard's reader, matplotlib

    log.info("%s", write_report(args.run_dir))


if __name__ == "__main__":
    main()
