"""Shared fixtures: the real Hydra config shrunk to tiny sizes, the commands in processes of
their own (tests/commands.py), and the real data sets in ../shared/data (skipped with a
reason when that folder is absent)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from dcgan.config import compose_config as compose_real_config
from tests.commands import REPO, run_cli, start_cli  # noqa: F401  (the tests' imports)

# Every test, and every command it starts, uses one CPU thread: under pytest-xdist (`-n auto`,
# the README's test command) two workers that each spread over every core slow each other far
# below half speed, the tests' tiny networks gain little from a second thread, and runs that
# are compared bit for bit must not choose their thread count (cpu_threads=auto) from the load
# of the moment. tests/test_cpu_share.py lifts it to test the choice itself.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("DCGAN_SHARED_DATA", REPO.parent / "shared" / "data"))

# Small enough that two epochs take a second or two on a 2-core CPU, and still 64x64 images.
TINY_NETWORKS = ["model.ngf=8", "model.ndf=8", "model.nz=16", "batch_size=16", "dataset.limit=64",
                 "log_every=1", "device=cpu"]
# ... and evaluated on 64 samples, not 512: the evaluation of 512 took half of a tiny run's time
# (6 of 13 s), and a tiny model's metrics are only read for being there, finite and consistent.
TINY = [*TINY_NETWORKS, "eval.n_samples=64",
        # ... and without report.html, whose plots took a tenth of every tiny run; the tests
        # that read the page (test_report.py, the signal tests) ask for it with report=true
        "report=false"]


def compose_config(*overrides: str):
    return compose_real_config(overrides)


@pytest.fixture
def make_config():
    """compose_config(*overrides): the real train.yaml with these overrides, as Hydra builds it."""
    return compose_config


@pytest.fixture
def cli():
    return run_cli


def user_error_line(result: subprocess.CompletedProcess, during_training: bool = False) -> str:
    """Assert the process failed as a user error: exit 2, one error line, no traceback.

    Before training starts the error is all there is on stderr; during training the progress
    bar came before it, and the error is the last line.
    """
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("dcgan: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    if not during_training:
        assert len(lines) == 1, lines
    return errors[0]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set DCGAN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny 2-epoch run on the default data set, shared by the read-only CLI tests."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    run_cli("dcgan-train", *TINY, "epochs=2", f"hydra.run.dir={run_dir}", check=True)
    return run_dir


# Fixtures that run the real commands in subprocesses: a test that uses one is `slow`.
SUBPROCESS_FIXTURES = {"cli", "trained_run", "evaluated_run", "uninterrupted", "small_run",
                       "legacy_run", "conditional_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SUBPROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
