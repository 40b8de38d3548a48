"""What `dcgan-train` loads before Hydra answers: the schema, the command-line checks and the
entry point load no torch (the largest import by far), so --help, --cfg and a refused command
line answer quickly. Checked by what is imported, not by the clock. And each of the six
commands does its job from a fresh interpreter, which imports only what the command does."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, run_cli

LOADS_TORCH = ("import dcgan.config, dcgan.cli.train, dcgan.store.run_lock, sys; "
               "print('torch' in sys.modules)")


def test_the_config_and_the_entry_point_load_no_torch():
    result = subprocess.run([sys.executable, "-c", LOADS_TORCH], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", (
        "importing dcgan.config or dcgan.cli.train loaded torch; "
        "`python -X importtime -c 'import dcgan.cli.train'` shows which module imports it")


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_prints_the_config_keys(cli, tmp_path, option):
    help_text = cli("dcgan-train", option, cwd=tmp_path, check=True).stdout
    assert "== Config ==" in help_text
    for key in ("epochs:", "condition:", "dataset:", "model:", "ema:"):
        assert key in help_text
    assert not (tmp_path / "runs").exists()  # nothing trains, nothing is created


@pytest.mark.slow  # six fresh interpreters
def test_every_command_works_from_a_fresh_interpreter(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(32):
        shade = np.full((40, 40, 3), index * 8, dtype=np.uint8)
        Image.fromarray(shade).save(images / f"{index:02d}.png")
    data = ["dataset=folder", f"dataset.root={images}", f"dataset.cache_dir={tmp_path / 'cache'}"]
    run = tmp_path / "run"

    def fresh(name: str, *args: str) -> str:
        result = run_cli(name, *args, check=True, fresh=True)
        return result.stdout + result.stderr

    assert "prepared 32 images" in fresh("dcgan-prepare", *data)
    training = [arg for arg in TINY if not arg.startswith("dataset.limit")]
    fresh("dcgan-train", *training, *data, "dataset.cache=true", "epochs=1", f"hydra.run.dir={run}")
    fresh("dcgan-sample", "--ckpt", str(run), "--n", "4", "--out", str(tmp_path / "grid.png"))
    assert Image.open(tmp_path / "grid.png").size[0] > 64
    assert "swd" in fresh("dcgan-eval", "--ckpt", str(run), "--n", "32").lower()
    fresh("dcgan-export", "--ckpt", str(run), "--format", "torchscript",
          "--out", str(tmp_path / "g.pt"))
    assert (tmp_path / "g.pt").stat().st_size > 0
    fresh("dcgan-report", str(run))
    assert "<html" in (run / "report.html").read_text()[:200].lower()
