"""The crash-safety guarantees of docs/reliability.md, each driven through the
real `dcgan-train` / `dcgan-sample` in subprocesses where signals, kills and resumes matter."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dcgan.store.checkpoints import REQUIRED_KEYS, load_generator_file, save_checkpoint
from tests.commands import CommandProcess, start_cli
from tests.conftest import TINY, run_cli, user_error_line

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[net][name], b[net][name])
               for net in ("generator", "discriminator") for name in a[net])


# -- 1. atomic checkpoints ---------------------------------------------------------------------

# the same command relaunched after every kill: a step checkpoint each step, so most of the
# time goes into writing them, where the kills must land
KILLED = ["dataset=fake", "dataset.size=100000", "model.ngf=32", "model.ndf=32", "model.nz=32",
          "batch_size=4", "ckpt_every_steps=1", "keep_last=2", "epochs=1",
          "ema.recalibrate_bn=false",  # the save is the write alone
          "log_every=1000", "device=cpu", "report=false", "resume=auto"]


def wait_until(condition, timeout: float, poll: float) -> None:
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(poll)


def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_last_pt(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    last = checkpoints / "last.pt"
    rng = random.Random(0)
    mid_write, steps = 0, []
    for _ in range(20):
        started = time.time()
        process = start_cli("dcgan-train", *KILLED, f"hydra.run.dir={tmp_path / 'run'}")
        wait_until(lambda since=started: last.exists() and last.stat().st_mtime > since, 60, 0.01)
        assert process.poll() is None, process.output()
        if rng.random() < 0.5:  # aim inside a write: at a random point of writing the file
            wait_until(lambda: any(checkpoints.glob(".*.tmp-*")), 10, 0.001)
            time.sleep(rng.uniform(0.0, 0.004))
        else:  # anywhere: training, writing, pruning
            time.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        assert process.wait(timeout=60) == -signal.SIGKILL
        mid_write += any(checkpoints.glob(".*.tmp-*"))  # killed inside write_atomic
        state = load(last)
        assert set(REQUIRED_KEYS) <= set(state)
        if (checkpoints / "generator.safetensors").exists():  # written at epoch ends only
            load_generator_file(checkpoints / "generator.safetensors")
        steps.append(int(state["step"]))
    assert mid_write >= 3, (mid_write, steps)  # the kills really landed inside writes
    assert steps == sorted(steps), steps  # resume=auto went on from each kill


# -- 2. graceful stop --------------------------------------------------------------------------

LONG_EPOCH = [arg for arg in TINY if not arg.startswith(("dataset.limit", "batch_size"))] + [
    "dataset=fake", "dataset.size=800", "batch_size=8"]  # 100 steps in the epoch


def start_training(*args: str) -> CommandProcess:
    return start_cli("dcgan-train", *args, merge_stderr=True)


def wait_for(path: Path, process: CommandProcess, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.output()[0]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("straight")
    run_cli("dcgan-train", *LONG_EPOCH, "epochs=1", f"hydra.run.dir={run}", check=True)
    return load(run / "checkpoints" / "last.pt")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_mid_epoch_and_resume_is_exact(tmp_path, uninterrupted, signum):
    run = tmp_path / "run"
    process = start_training(*LONG_EPOCH, "epochs=1", "ckpt_every_steps=3", "report=true",
                             f"hydra.run.dir={run}")
    wait_for(run / "checkpoints" / "step_0000003.pt", process)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, output
    assert f"resume with: dcgan-train resume={run}" in output
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert f"stopped by {signum.name}" in (run / "report.html").read_text()

    stopped = load(run / "checkpoints" / "last.pt")
    assert stopped["epoch"] == 0 and 3 <= stopped["batch_in_epoch"] < 100
    assert stopped["step"] == stopped["batch_in_epoch"]

    run_cli("dcgan-train", f"resume={run}", check=True)
    finished = load(run / "checkpoints" / "last.pt")
    assert finished["epoch"] == 1 and finished["step"] == uninterrupted["step"] == 100
    # the rest of the epoch used the same shuffled order: no batch skipped or seen twice
    assert same_weights(finished, uninterrupted)


def test_a_second_signal_stops_at_once(tmp_path):
    run = tmp_path / "run"
    process = start_training(*LONG_EPOCH, "dataset.size=80000", "epochs=1", "ckpt_every_steps=1",
                             f"hydra.run.dir={run}")
    wait_for(run / "checkpoints" / "step_0000002.pt", process)
    # frozen wherever it is (inside a step or a checkpoint write), both signals are pending when
    # it wakes, so the second always arrives before the first could have been acted on
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped at once by a second SIGTERM" in output
    assert f"resume with: dcgan-train resume={run}" in output
    assert "saved" not in output.split("SIGINT received")[1]  # no checkpoint on the way out
    assert set(REQUIRED_KEYS) <= set(load(run / "checkpoints" / "last.pt"))
    assert not list((run / "checkpoints").glob(".*.tmp-*"))  # a write it left is cleaned up


# -- 3. preemptible jobs: resume=auto ----------------------------------------------------------

def test_resume_auto_starts_fresh_then_continues_then_skips_a_bad_checkpoint(tmp_path):
    run = tmp_path / "job"
    command = [*TINY, "resume=auto", f"hydra.run.dir={run}"]
    first = run_cli("dcgan-train", *command, "epochs=1", check=True)
    assert "no checkpoint" in first.stdout + first.stderr
    second = run_cli("dcgan-train", *command, "epochs=2", check=True)
    assert "resuming from" in second.stdout + second.stderr
    assert load(run / "checkpoints" / "last.pt")["epoch"] == 2

    last = run / "checkpoints" / "last.pt"
    torn = last.read_bytes()[:1000]
    last.unlink()  # a torn copy written by something other than us (a new file, not a link)
    last.write_bytes(torn)
    third = run_cli("dcgan-train", *command, "epochs=3", check=True)
    log = third.stdout + third.stderr
    assert "skipping checkpoint that does not load" in log and "last.pt" in log
    assert "epoch_002.pt (epoch 2" in log
    assert load(last)["epoch"] == 3


# -- 4. cadence and retention ------------------------------------------------------------------

def test_step_checkpoints_and_keep_last(tmp_path):
    run = tmp_path / "run"
    run_cli("dcgan-train", *TINY, "epochs=3", "ckpt_every_steps=2", "keep_last=2",
            f"hydra.run.dir={run}", check=True)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    # best.pt (the best evaluated epoch) and last.pt are never pruned
    assert names == ["best.pt", "epoch_002.pt", "epoch_003.pt", "generator.safetensors",
                     "last.pt", "step_0000010.pt", "step_0000012.pt"]
    assert load(run / "checkpoints" / "step_0000010.pt")["step"] == 10


# -- 5. non-finite values ----------------------------------------------------------------------

def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    run_cli("dcgan-train", *TINY, "epochs=1", f"hydra.run.dir={run}", check=True)
    good = (run / "checkpoints" / "last.pt").read_bytes()
    result = run_cli("dcgan-train", f"resume={run}", "epochs=2", "lr=1e30")
    assert result.returncode == 3, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "loss" in message and "at step" in message and "nonfinite_step_" in message
    saved = list((run / "checkpoints").glob("nonfinite_step_*.pt"))
    assert len(saved) == 1 and set(REQUIRED_KEYS) <= set(load(saved[0]))
    assert (run / "checkpoints" / "last.pt").read_bytes() == good


# -- 6. safe loading ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("small")
    run_cli("dcgan-train", *TINY, "epochs=1", f"hydra.run.dir={run}", check=True)
    return run


def test_checkpoint_of_another_architecture_is_one_line(small_run, tmp_path):
    state = load(small_run / "checkpoints" / "last.pt")
    state["arch"]["ngf"] = 16  # says ngf=16, holds ngf=8 weights: as if from another model
    other = tmp_path / "other.pt"
    save_checkpoint(state, [other])  # sealed with a digest of what it now says
    line = user_error_line(run_cli("dcgan-train", f"resume={other}",
                                   f"hydra.run.dir={tmp_path / 'run'}"))
    assert "other.pt" in line and "ngf=16" in line
    line = user_error_line(run_cli("dcgan-sample", "--ckpt", str(other)))
    assert "other.pt" in line and "do not match" in line


def test_crafted_pickle_is_refused_by_the_cli(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    subprocess.run([sys.executable, "-c", (
        "import os, sys, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'generator': Evil()}}, '{evil}')\n")], check=True)
    for result in (run_cli("dcgan-train", f"resume={evil}", f"hydra.run.dir={tmp_path / 'r'}"),
                   run_cli("dcgan-sample", "--ckpt", str(evil))):
        assert "evil.pt" in user_error_line(result)
    assert not marker.exists()


# -- 7. the shareable generator ----------------------------------------------------------------

def test_generator_safetensors_samples_like_the_checkpoint(small_run, tmp_path):
    generator_file = small_run / "checkpoints" / "generator.safetensors"
    from_file, from_checkpoint = tmp_path / "a.png", tmp_path / "b.png"
    run_cli("dcgan-sample", "--ckpt", str(generator_file), "--n", "9", "--seed", "4",
            "--out", str(from_file), check=True)
    run_cli("dcgan-sample", "--ckpt", str(small_run / "checkpoints" / "last.pt"), "--n", "9",
            "--seed", "4", "--out", str(from_checkpoint), check=True)
    assert from_file.read_bytes() == from_checkpoint.read_bytes()
    truncated = tmp_path / "g.safetensors"
    truncated.write_bytes(generator_file.read_bytes()[:100])
    assert "g.safetensors" in user_error_line(run_cli("dcgan-sample", "--ckpt", str(truncated)))


# -- 8. messy data and unwritable places -------------------------------------------------------

def messy_folder(root: Path) -> Path:
    root.mkdir()
    for index in range(22):
        Image.new("RGB", (70, 70), (index * 10, 50, 90)).save(root / f"{index:02d}.jpg")
    good = (root / "00.jpg").read_bytes()
    (root / "05.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (root / "09.jpg").write_bytes(b"this is not an image")
    return root


def test_bad_images_are_skipped_and_counted(tmp_path):
    images = messy_folder(tmp_path / "images")
    run = tmp_path / "run"
    result = run_cli("dcgan-train", *TINY, "dataset=folder", f"dataset.root={images}",
                     "batch_size=8", "epochs=1", "num_workers=0", f"hydra.run.dir={run}",
                     check=True)
    assert "skipped 2 unreadable image(s)" in result.stdout + result.stderr
    assert load(run / "checkpoints" / "last.pt")["epoch"] == 1


def test_bad_image_with_on_bad_image_error(tmp_path):
    images = messy_folder(tmp_path / "images")
    line = user_error_line(run_cli(
        "dcgan-train", *TINY, "dataset=folder", f"dataset.root={images}", "batch_size=22",
        "epochs=1", "dataset.on_bad_image=error", f"hydra.run.dir={tmp_path / 'run'}"),
        during_training=True)
    assert "cannot read image" in line and "05.jpg" in line


def test_unwritable_run_directory(tmp_path):
    (tmp_path / "a_file").write_text("")
    line = user_error_line(run_cli("dcgan-train", *TINY,
                                   f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"))
    assert "cannot create the run directory" in line
