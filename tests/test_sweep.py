"""Hydra multirun: one directory per job and a summary table of the sweep."""

import csv

import pytest

from tests.conftest import TINY

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses


def test_sweep_runs_each_job_and_writes_a_summary(cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("dcgan-train", "-m", *[a for a in TINY if a != "model.ngf=8"], "epochs=1",
                 "model.ngf=4,8", "lr=1e-4,-1", f"hydra.sweep.dir={sweep}", check=True)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"]
    for row in rows:
        assert (sweep / row["job"]).is_dir()
    done = [row for row in rows if row["status"] == "finished"]
    assert len(done) == 2 and all("lr=0.0001" in row["overrides"] for row in done)
    assert {row["overrides"].split("model.ngf=")[1].split()[0] for row in done} == {"4", "8"}
    assert all(float(row["loss_d"]) > 0 and int(row["step"]) == 4 for row in done)
    failed = [row for row in rows if row["status"] != "finished"]
    assert len(failed) == 2 and all("lr=-1" in row["overrides"] for row in failed)
    assert "lr must be positive" in result.stdout + result.stderr
    markdown = (sweep / "summary.md").read_text()
    assert markdown.startswith("| job | overrides | status |") and markdown.count("\n") == 6
