"""Checkpoints and generator files carry a digest of their contents, checked on every load: a
flipped byte, an edited field or a removed digest is one clear line (exit 2), never weights
trained on or shipped; resume=auto and rollbacks pass over a corrupted file."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dcgan.store.checkpoints import (
    CorruptedFile,
    load_checkpoint,
    load_generator_file,
    newest_before,
    save_checkpoint,
    save_generator,
)
from dcgan.store.integrity import DIGEST_KEY, FORMAT_KEY, state_digest, tensor_bytes
from tests.conftest import TINY, run_cli, user_error_line

LEGACY = Path(__file__).resolve().parent / "data" / "legacy" / "digits32_ngf8_7642f76.pt"


def flip_tensor_byte(path: Path, fraction: float = 0.5) -> None:
    """Flip one byte inside the largest tensor's data in a torch zip checkpoint (the container
    stores entries uncompressed, and torch.load does not check their CRCs)."""
    with zipfile.ZipFile(path) as archive:
        member = max((info for info in archive.infolist() if "/data/" in info.filename),
                     key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26:
                                                     member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    data[start + int(member.file_size * fraction)] ^= 0x10
    path.write_bytes(bytes(data))


def small_state() -> dict:
    weight = torch.randn(4, 3, 2, 2).to(memory_format=torch.channels_last)
    return {"generator": {"w": weight, "b": torch.zeros(3, dtype=torch.bfloat16)},
            "discriminator": {}, "opt_g": {"state": {0: {"step": torch.tensor(3.0)}},
                                           "param_groups": [{"betas": (0.5, 0.999)}]},
            "opt_d": {}, "epoch": 1, "step": 10, "rng": {"python": (3, (1, 2), None)},
            "config": {"lr": 2e-4, "resume": None}, "arch": {"nz": 4}, "hooks": {}}


def test_tensor_bytes_are_a_view_for_dense_layouts():
    weight = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    view = tensor_bytes(weight)
    assert view.nbytes == weight.numel() * 4
    weight[0, 0, 0, 0] = 123.0  # the view sees the change: no copy was made
    assert bytes(tensor_bytes(weight)) == bytes(view)


def test_a_saved_checkpoint_round_trips_its_digest(tmp_path):
    save_checkpoint(small_state(), [tmp_path / "a.pt"])
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw[FORMAT_KEY] == "dcgan-checkpoint/2" and raw[DIGEST_KEY] == state_digest(raw)
    assert load_checkpoint(tmp_path / "a.pt")["step"] == 10


def test_a_flipped_tensor_byte_is_caught(tmp_path):
    save_checkpoint(small_state(), [tmp_path / "a.pt"])
    flip_tensor_byte(tmp_path / "a.pt")
    torch.load(tmp_path / "a.pt", weights_only=True)  # torch itself does not notice
    with pytest.raises(CorruptedFile, match="a.pt is corrupted: its contents do not match"):
        load_checkpoint(tmp_path / "a.pt")


def test_a_changed_value_or_a_removed_digest_is_caught(tmp_path):
    state = torch.load(save_and_read(tmp_path), weights_only=True)
    state["config"]["lr"] = 1.0  # edited by hand, digest kept
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CorruptedFile, match="do not match the digest"):
        load_checkpoint(tmp_path / "edited.pt")
    del state[DIGEST_KEY]  # the digest removed, and a weight changed too
    state["generator"]["w"][0, 0, 0, 0] += 1.0
    torch.save(state, tmp_path / "stripped.pt")
    with pytest.raises(CorruptedFile, match="lost the digest"):
        load_checkpoint(tmp_path / "stripped.pt")


def save_and_read(tmp_path: Path) -> Path:
    save_checkpoint(small_state(), [tmp_path / "a.pt"])
    return tmp_path / "a.pt"


def test_a_checkpoint_from_before_digests_loads_with_a_notice(caplog):
    state = load_checkpoint(LEGACY)
    assert state["step"] == 4
    assert "written before checkpoints carried a digest" in caplog.text


def test_generator_files_are_checked_too(tmp_path):
    weights = {"main.0.weight": torch.randn(4, 8, 4, 4)}
    save_generator(weights, {"nz": 4}, tmp_path / "g.safetensors", epoch=1, step=2)
    tensors, arch = load_generator_file(tmp_path / "g.safetensors")
    assert arch == {"nz": 4} and torch.equal(tensors["main.0.weight"], weights["main.0.weight"])
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    edited = {**metadata, "arch": json.dumps({"nz": 8})}
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=edited)
    with pytest.raises(CorruptedFile, match="edited.safetensors is corrupted"):
        load_generator_file(tmp_path / "edited.safetensors")
    tensors["main.0.weight"][0, 0, 0, 0] += 1
    save_file(tensors, str(tmp_path / "changed.safetensors"), metadata=metadata)
    with pytest.raises(CorruptedFile):
        load_generator_file(tmp_path / "changed.safetensors")


def test_rollback_search_passes_over_a_corrupted_checkpoint(tmp_path):
    for step in (2, 4):
        save_checkpoint({**small_state(), "step": step}, [tmp_path / f"step_{step:07d}.pt"])
    flip_tensor_byte(tmp_path / "step_0000004.pt")
    path, state = newest_before(tmp_path, 5)
    assert path.name == "step_0000002.pt" and state["step"] == 2


# -- through the real commands -----------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    run_cli("dcgan-train", *TINY, "epochs=2", "eval.every=0", f"hydra.run.dir={run_dir}",
            check=True)
    return run_dir


@pytest.mark.slow
def test_sample_eval_and_export_refuse_a_corrupted_checkpoint(run, tmp_path):
    bad = tmp_path / "bad.pt"
    shutil.copy(run / "checkpoints" / "last.pt", bad)
    flip_tensor_byte(bad)
    for command, args in (("dcgan-sample", ["--out", str(tmp_path / "x.png")]),
                          ("dcgan-eval", ["--n", "16"]),
                          ("dcgan-export", ["--format", "torchscript", "--out",
                                            str(tmp_path / "g.pt")])):
        line = user_error_line(run_cli(command, "--ckpt", str(bad), *args))
        assert "bad.pt is corrupted" in line, command
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "g.pt").exists()


@pytest.mark.slow
def test_resume_auto_takes_the_next_newest_and_refuses_when_all_are_corrupted(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.pt"
    flip_tensor_byte(last)  # copytree made every name its own file: epoch_002.pt stays good
    command = [*TINY, "eval.every=0", "resume=auto", f"hydra.run.dir={copy}"]
    result = run_cli("dcgan-train", *command, "epochs=3", check=True)
    log = result.stdout + result.stderr
    assert "last.pt is corrupted" in log and "epoch_002.pt (epoch 2" in log
    damaged = set()
    for path in (copy / "checkpoints").glob("*.pt"):
        if path.stat().st_ino not in damaged:  # a hard-linked name shares its file's damage
            damaged.add(path.stat().st_ino)
            flip_tensor_byte(path)
    before = {p.name: p.read_bytes() for p in (copy / "checkpoints").glob("*.pt")}
    line = user_error_line(run_cli("dcgan-train", *command, "epochs=4"), during_training=True)
    assert "none of the" in line and "nothing was started" in line
    assert {p.name: p.read_bytes() for p in (copy / "checkpoints").glob("*.pt")} == before


@pytest.mark.slow
def test_damage_to_a_linked_file_sends_resume_auto_one_checkpoint_further_back(run, tmp_path):
    copy = tmp_path / "run"
    run_cli("dcgan-train", *TINY, "epochs=2", "eval.every=0", f"hydra.run.dir={copy}",
            check=True)
    last = copy / "checkpoints" / "last.pt"
    assert last.stat().st_ino == (copy / "checkpoints" / "epoch_002.pt").stat().st_ino
    flip_tensor_byte(last)  # bit rot in the file both names point to
    result = run_cli("dcgan-train", *TINY, "eval.every=0", "resume=auto", "epochs=3",
                     f"hydra.run.dir={copy}", check=True)
    log = result.stdout + result.stderr
    assert "last.pt is corrupted" in log and "epoch_002.pt is corrupted" in log
    assert "epoch_001.pt (epoch 1" in log
    assert load_checkpoint(last)["epoch"] == 3
