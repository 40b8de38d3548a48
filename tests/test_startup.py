"""What `dcgan-train` loads before Hydra answers: the schema, the command-line checks and the
entry point load no torch (the largest import by far), so --help, --cfg and a refused command
line answer quickly. Checked by what is imported, not by the clock."""

import subprocess
import sys

import pytest

LOADS_TORCH = ("import dcgan.config, dcgan.cli.train, dcgan.store.run_lock, sys; "
               "print('torch' in sys.modules)")


def test_the_config_and_the_entry_point_load_no_torch():
    result = subprocess.run([sys.executable, "-c", LOADS_TORCH], capture_output=True, text=True,
                            timeout=120)
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
