"""A wheel, installed into a fresh virtual environment, finds its configs without the repo."""

import pytest
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses


def test_wheel_install_finds_its_configs(tmp_path):
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
