"""`dcgan-export`: TorchScript (and, where onnx is installed, ONNX) files that run without dcgan."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dcgan.cli import export
from dcgan.errors import DCGANError
from dcgan.store.checkpoints import load_generator
from tests.conftest import run_cli, user_error_line

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses

CPU = torch.device("cpu")
HAS_ONNX = importlib.util.find_spec("onnx") is not None
HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None

# Run by `python -I` in an empty folder, with dcgan made unimportable: the file must stand alone.
LOAD_WITHOUT_DCGAN = textwrap.dedent("""
    import sys
    sys.modules["dcgan"] = None  # any `import dcgan...` now raises ImportError
    import torch
    module = torch.jit.load(sys.argv[1])
    with torch.no_grad():
        images = module(torch.load(sys.argv[2]))
    assert not any(name.startswith("dcgan.") for name in sys.modules), "dcgan was imported"
    torch.save(images, sys.argv[3])
""")


def export_cli(*args: str) -> subprocess.CompletedProcess:
    """`dcgan-export` as a user runs it (`python -m dcgan.cli.export` until the script is installed)."""
    if Path(sys.executable).with_name("dcgan-export").exists():
        return run_cli("dcgan-export", *args)
    return subprocess.run([sys.executable, "-m", "dcgan.cli.export", *args], capture_output=True,
                          text=True, timeout=300)


def eager(checkpoint: Path, noise: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_generator(checkpoint, CPU)(noise)


def test_torchscript_runs_without_dcgan_and_matches(trained_run, tmp_path):
    out = tmp_path / "generator.pt"
    result = export_cli("--ckpt", str(trained_run), "--format", "torchscript", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stderr and str(out) in result.stderr
    assert "Warning" not in result.stderr

    noise = export.check_noise(16, seed=5, batch=3)  # another batch size than the trace's 8
    torch.save(noise, tmp_path / "noise.pt")
    subprocess.run([sys.executable, "-I", "-c", LOAD_WITHOUT_DCGAN, str(out),
                    str(tmp_path / "noise.pt"), str(tmp_path / "images.pt")],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    images = torch.load(tmp_path / "images.pt", weights_only=True)
    expected = eager(trained_run / "checkpoints" / "last.pt", noise)
    assert images.shape == (3, 1, 64, 64)
    assert (images - expected).abs().max().item() <= 1e-5


def test_torchscript_from_a_generator_file(trained_run, tmp_path):
    weights = trained_run / "checkpoints" / "generator.safetensors"
    out = tmp_path / "nested" / "g.pt"
    result = export_cli("--ckpt", str(weights), "--format", "torchscript", "--out", str(out))
    assert result.returncode == 0, result.stderr
    noise = export.check_noise(16)
    assert (export.run_torchscript(out.read_bytes(), (noise,)) - eager(weights, noise)).abs().max() \
        <= 1e-5
    assert [path.name for path in out.parent.iterdir()] == ["g.pt"]  # no temporary left


def test_a_mismatch_is_refused_and_nothing_is_written(trained_run, tmp_path, monkeypatch,
                                                      capsys):
    serialise, run = export.EXPORTERS["torchscript"]
    monkeypatch.setitem(export.EXPORTERS, "torchscript",
                        (serialise, lambda data, noise: run(data, noise) + 1e-3))
    out = tmp_path / "g.pt"
    with pytest.raises(SystemExit) as exited:
        export.main(["--ckpt", str(trained_run), "--format", "torchscript", "--out", str(out)])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("dcgan: error:") and "max abs difference" in error
    assert list(tmp_path.iterdir()) == []


def test_check_export_tolerance(caplog):
    expected = torch.zeros(8, 1, 4, 4)
    caplog.set_level("INFO", logger="dcgan.cli.export")
    export.check_export("torchscript", expected, expected + 5e-5)
    assert "max abs difference" in caplog.text and "5e-05" in caplog.text
    for actual in (expected + 2e-4, expected * float("nan"), expected[:4]):
        with pytest.raises(DCGANError):
            export.check_export("torchscript", expected, actual)
    export.check_export("onnx", expected, None)
    assert "skipped the numeric check" in caplog.text


@pytest.mark.skipif(HAS_ONNX, reason="onnx is installed; test_onnx_export covers --format onnx")
def test_onnx_without_onnx_says_how_to_install(trained_run, tmp_path):
    out = tmp_path / "g.onnx"
    line = user_error_line(export_cli("--ckpt", str(trained_run), "--format", "onnx",
                                      "--out", str(out)))
    assert 'pip install "dcgan[onnx]"' in line and not out.exists()


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed (pip install \"dcgan[onnx]\")")
def test_onnx_export(trained_run, tmp_path):
    import onnx

    out = tmp_path / "g.onnx"
    result = export_cli("--ckpt", str(trained_run), "--format", "onnx", "--out", str(out))
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [tensor.name for tensor in model.graph.input] == ["z"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    if not HAS_ONNXRUNTIME:
        assert "skipped the numeric check" in result.stderr
        return
    assert "max abs difference" in result.stderr
    noise = export.check_noise(16, seed=5, batch=3)
    images = export.run_onnx(out.read_bytes(), (noise,))
    expected = eager(trained_run / "checkpoints" / "last.pt", noise)
    assert (images - expected).abs().max().item() <= 1e-5


def test_export_errors_are_one_line(tmp_path, trained_run):
    out = tmp_path / "g.pt"
    line = user_error_line(export_cli("--ckpt", str(tmp_path / "none.pt"),
                                      "--format", "torchscript", "--out", str(out)))
    assert "does not exist" in line and not out.exists()
    line = user_error_line(export_cli("--ckpt", str(trained_run), "--format", "torchscript",
                                      "--out", str(tmp_path)))
    assert "is a folder" in line
