"""nonfinite.policy=rollback: a run made to diverge goes back to its newest checkpoint with
lower learning rates and finishes with finite weights and a real grid; the lowered rates
survive a resume; after max_retries it stops as policy=stop does (exit 3)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.store.checkpoints import load_checkpoint
from tests.conftest import TINY, run_cli
from tests.test_quality import read_texts

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses

QUICK = [*TINY, "eval.every=0"]  # 4 steps an epoch


@pytest.fixture
def healthy_epoch(tmp_path) -> Path:
    run = tmp_path / "run"
    run_cli("dcgan-train", *QUICK, "epochs=1", f"hydra.run.dir={run}", check=True)
    return run


def test_a_diverging_run_rolls_back_with_lower_rates_and_finishes(healthy_epoch):
    run = healthy_epoch
    # lr=1e30 overflows at the first step; one retry at 1e30 x 1e-33 = 1e-3 trains on
    result = run_cli("dcgan-train", f"resume={run}", "epochs=3", "lr=1e30",
                     "nonfinite.policy=rollback", "nonfinite.lr_factor=1e-33", check=True)
    output = result.stdout + result.stderr
    assert re.search(r"non-finite (generator|discriminator) loss \(loss/.\) at step 5: rolled "
                     r"back to epoch_001\.pt \(step 4\)", output)
    assert "lr_g=0.001, lr_d=0.001 (retry 1 of 3)" in output
    assert any("rolled back to epoch_001.pt" in text for text in read_texts(run))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (3, 12)
    assert state["hooks"]["nonfinite"] == {"retries": 1, "lr_scale": pytest.approx(1e-33)}
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    for network in ("generator", "discriminator"):
        assert all(torch.isfinite(t).all() for t in state[network].values())
    with Image.open(run / "samples" / "epoch_003.png") as grid:
        pixels = np.asarray(grid, dtype=np.float32)
    assert pixels.std() > 5  # not a blank or NaN-black grid
    assert list((run / "checkpoints").glob("nonfinite_step_5.pt"))  # kept for inspection

    # a resume keeps the lowered rates (the config still says lr=1e30)
    run_cli("dcgan-train", f"resume={run}", "epochs=4", check=True)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["lr"] == 1e30 and state["step"] == 16
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


def test_after_max_retries_it_stops_as_before(healthy_epoch):
    run = healthy_epoch
    good = (run / "checkpoints" / "last.pt").read_bytes()
    result = run_cli("dcgan-train", f"resume={run}", "epochs=2", "lr=1e30",
                     "nonfinite.policy=rollback", "nonfinite.max_retries=2")
    assert result.returncode == 3, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "(retry 2 of 2)" in output and "after 2 recovery attempt(s)" in output
    assert "nonfinite_step_5.pt" in result.stderr.strip().splitlines()[-1]
    # the last rollback's last.pt is the epoch-1 state with the lowered rates
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 4 and state["hooks"]["nonfinite"]["retries"] == 2
    assert (run / "checkpoints" / "epoch_001.pt").is_file() and good


def test_with_no_checkpoint_to_go_back_to_it_stops_as_before(tmp_path):
    run = tmp_path / "run"
    result = run_cli("dcgan-train", *QUICK, "epochs=1", "lr=1e30", "nonfinite.policy=rollback",
                     f"hydra.run.dir={run}")
    assert result.returncode == 3, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "at step 1" in message and "nonfinite_step_1.pt" in message
    assert not (run / "checkpoints" / "last.pt").exists()
