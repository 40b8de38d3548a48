"""The loggers behind the interface: csv (metrics.csv) and wandb (offline) get what TensorBoard
gets, resume continues them, and a logger whose package is missing is refused before training."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dcgan.config import validate
from dcgan.errors import DCGANError
from dcgan.reporting.loggers.csv import CSVLogger
from tests.conftest import TINY, run_cli


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_rows_columns_and_purge(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.scalars(1, {"loss_d": 1.5, "loss_g": 0.5})
    logger.scalars(2, {"loss_d": 1.25, "loss_g": 0.75})
    logger.scalars(2, {"metrics/swd/mean": 40.0})  # a new column rewrites the file
    logger.scalars(3, {"loss_d": 1.0})
    rows = read_csv(tmp_path / "metrics.csv")
    assert [row["step"] for row in rows] == ["1", "2", "2", "3"]
    assert rows[0]["loss/d"] == "1.5" and rows[2]["metrics/swd/mean"] == "40"
    assert rows[3]["loss/g"] == ""
    CSVLogger(tmp_path, purge_step=3)  # a resume from step 2 drops what came after
    assert [row["step"] for row in read_csv(tmp_path / "metrics.csv")] == ["1", "2", "2"]


def test_unknown_or_missing_loggers_are_refused(make_config, monkeypatch):
    with pytest.raises(DCGANError, match="unknown logger 'mlflow'"):
        validate(make_config("logger=[tensorboard,mlflow]"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(DCGANError, match=r'logger=wandb needs the wandb package.*dcgan\[wandb\]'):
        validate(make_config("logger=[wandb]"))


@pytest.mark.slow
def test_csv_and_wandb_get_the_run_and_resume_continues_them(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    loggers = "logger=[tensorboard,csv,wandb]"
    run_cli("dcgan-train", *TINY, "epochs=2", "eval.n_samples=32", loggers,
            f"hydra.run.dir={run}", check=True)
    rows = read_csv(run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["loss/d"]] == list(range(1, 9))
    assert [int(r["step"]) for r in rows if r.get("metrics/swd/mean")] == [4, 8]
    run_id = (run / "wandb_run_id").read_text().strip()
    offline = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1
    # the offline record (protobuf) holds the tags and the config; the grids are media files
    record = next(offline[0].glob("run-*.wandb")).read_bytes()
    for key in (b"loss/d", b"loss/g", b"d/real_prob", b"d/fake_prob", b"metrics/swd/mean",
                b"perf/img_per_s", b"ngf"):
        assert key in record, key
    grids = sorted(p.name.split("_")[1] for p in
                   (offline[0] / "files" / "media" / "images" / "samples").glob("fixed_*.png"))
    assert grids == ["4", "8"]  # one fixed-noise grid per epoch, at its step

    run_cli("dcgan-train", f"resume={run}", "epochs=3", check=True)
    assert (run / "wandb_run_id").read_text().strip() == run_id  # the same wandb run
    assert len(sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
    rows = read_csv(run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["loss/d"]] == list(range(1, 13))


def test_a_missing_logger_package_is_one_line_before_training(cli, tmp_path):
    from tests.conftest import user_error_line

    result = cli("dcgan-train", *TINY, "logger=[tensorboard,nope]",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert "unknown logger 'nope'" in user_error_line(result)
    assert not (tmp_path / "run" / "checkpoints").exists()
