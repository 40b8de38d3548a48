"""A wheel, installed into a fresh virtual environment, finds its configs and its bundled data
set without the repo, and trains on the offline default."""

import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses


def test_wheel_install_finds_its_configs_and_data(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("dcgan-*.whl"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # reuse the torch, hydra, ... of the interpreter running the tests (a venv or not)
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                  "get_paths()['purelib'])"], check=True, capture_output=True,
                                 text=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (target / "reuse_test_runner.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)

    elsewhere = tmp_path / "elsewhere"  # no configs/ folder anywhere near
    elsewhere.mkdir()
    located = subprocess.run(
        [str(python), "-c", "import dcgan.config as c; print(c.config_dir())"],
        cwd=elsewhere, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(located).is_relative_to(env_dir), located
    assert (Path(located) / "dataset" / "celeba.yaml").is_file()

    job = subprocess.run([str(env_dir / "bin" / "dcgan-train"), "dataset=celeba", "--cfg", "job"],
                         cwd=elsewhere, check=True, capture_output=True, text=True).stdout
    assert "name: celeba" in job and "ngf: 64" in job

    # the offline default ships inside the wheel, with its licence notice
    names = zipfile.ZipFile(wheel).namelist()
    assert {"dcgan/data/bundled/t10k-images-idx3-ubyte.gz", "dcgan/data/bundled/NOTICE.md"} <= set(names)
    trained = subprocess.run([str(env_dir / "bin" / "dcgan-train"), "model.ngf=8", "model.ndf=8",
                              "batch_size=16", "dataset.limit=32", "epochs=1", "eval.every=0",
                              "hydra.run.dir=run"], cwd=elsewhere, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "MNIST test: 32 images from the bundled MNIST test set" in trained.stdout + trained.stderr
    assert (elsewhere / "run" / "samples" / "epoch_001.png").is_file()
    assert (elsewhere / "run" / "report.html").is_file()
