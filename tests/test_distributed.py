"""torchrun with the Gloo backend on the CPU: two processes, one run, identical replicas."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dcgan.data.loader import EpochShuffle

pytestmark = pytest.mark.slow  # runs the real commands in subprocesses

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SMALL = ["model.ngf=8", "model.ndf=8", "model.nz=16", "batch_size=8", "device=cpu",
         "ddp_check_every=1", "log_every=2", "report=false"]


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ranks_get_disjoint_shares_that_cover_the_epoch():
    shares = []
    for rank in range(2):
        sampler = EpochShuffle(64, seed=3, num_replicas=2, rank=rank)
        sampler.set_epoch(5)
        shares.append(list(sampler))
    assert len(shares[0]) == len(shares[1]) == 32
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(64))
    later = EpochShuffle(64, seed=3, num_replicas=2, rank=0)
    later.set_epoch(5, start_index=8)  # mid-epoch resume continues the same share
    assert list(later) == shares[0][8:]


def test_two_processes_train_one_run_with_identical_weights(tmp_path):
    run = tmp_path / "run"
    result = torchrun("-m", "dcgan.cli.train", *SMALL, "dataset=fake", "dataset.size=64",
                      "epochs=2", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-4000:]
    log = (run / "train.log").read_text()
    assert "2 processes, global batch 16" in log
    # 64 images / (2 ranks x 8) = 4 steps per epoch; every step checked across ranks
    assert log.count("weights identical on all 2 ranks") == 8
    assert load(run / "checkpoints" / "last.pt")["step"] == 8
    assert len(load(run / "checkpoints" / "last.pt")["rng_per_rank"]) == 2
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_001.png", "epoch_002.png", "progress.gif", "real.png"]
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/d")] == [2, 4, 6, 8]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no second run directory

    resumed = torchrun("-m", "dcgan.cli.train", f"resume={run}", "epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert load(run / "checkpoints" / "last.pt")["step"] == 12


def test_regularisers_and_the_lr_tail_under_torchrun(tmp_path):
    """LeCam (anchors averaged over the ranks), R1 through D's plain module, bCR through the
    DDP one, and the lr tail: the replicas stay identical at every step."""
    run = tmp_path / "run"
    result = torchrun("-m", "dcgan.cli.train", *SMALL, "dataset=fake", "dataset.size=64",
                      "dataset.image_size=32", "epochs=2", "reg.lecam.weight=0.3",
                      "reg.r1.gamma=1", "reg.r1.interval=2", "reg.bcr.real=1", "reg.bcr.fake=1",
                      "lr_schedule=linear_tail", "lr_tail_fraction=0.5", "eval.every=0",
                      f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-4000:]
    log = (run / "train.log").read_text()
    assert log.count("weights identical on all 2 ranks") == 8
    state = load(run / "checkpoints" / "last.pt")
    assert state["lecam"]["real"].item() != 0 and state["opt_d"]["param_groups"][0]["lr"] < 2e-4


def test_torchrun_on_the_console_script_with_image_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index in range(40):
        Image.new("RGB", (72, 64), (index * 6, 80, 160)).save(images / f"{index:02d}.png")
    script = shutil.which("dcgan-train") or str(Path(sys.executable).with_name("dcgan-train"))
    run = tmp_path / "run"
    result = torchrun(script, *SMALL, "dataset=folder", f"dataset.root={images}",
                      "num_workers=1", "epochs=1", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-4000:]
    # 40 images / (2 x 8) = 2 full global batches
    assert load(run / "checkpoints" / "last.pt")["step"] == 2
    assert (run / "train.log").read_text().count("weights identical") == 2


def worker_of_rank(parent: int, rank: int) -> int:
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True,
                              text=True).stdout.split()
    for pid in map(int, children):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return pid
    raise AssertionError(f"no worker of rank {rank} among {children}")


def test_a_signal_to_one_rank_stops_all_with_one_checkpoint(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*TORCHRUN, "-m", "dcgan.cli.train", *SMALL, "ddp_check_every=0", "dataset=fake",
         "dataset.size=4000", "epochs=1", "ckpt_every_steps=5", f"hydra.run.dir={run}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_0000005.pt").exists():
        assert process.poll() is None and time.time() < deadline, process.stdout.read()
        time.sleep(0.05)
    os.kill(worker_of_rank(process.pid, 1), signal.SIGTERM)  # rank 1 only
    output, _ = process.communicate(timeout=120)
    assert "resume with: dcgan-train resume=" in output
    stopped = load(run / "checkpoints" / "last.pt")
    assert stopped["epoch"] == 0 and 5 <= stopped["batch_in_epoch"] < 250
    assert not list((run / "checkpoints").glob(".*.tmp-*"))


def test_collapse_rollback_under_torchrun_keeps_the_ranks_identical(tmp_path):
    run = tmp_path / "run"
    collapsing = ["lr_g=1e-6", "lr_d=5e-3", "collapse.patience=3", "collapse.g_loss_ceiling=4",
                  "collapse.d_loss_floor=0.1", "keep_last=0", "collapse.policy=rollback",
                  "collapse.rollback.max_rollbacks=1", "eval.every=0", "ckpt_every_steps=1"]
    result = torchrun("-m", "dcgan.cli.train", *SMALL, "log_every=1", *collapsing, "dataset=fake",
                      "dataset.size=64", "epochs=8", f"hydra.run.dir={run}")
    assert result.returncode in (0, 4), result.stderr[-4000:]
    log = (run / "train.log").read_text()
    rolled = re.search(r"rolled back to (step_\d+\.pt) \(epoch \d+, step (\d+)\)", log)
    assert rolled, log[-3000:]
    # every step after the rollback was checked on both ranks: the weights stayed identical
    after = log[rolled.end():]
    checked = re.findall(r"step (\d+): weights identical on all 2 ranks", after)
    assert checked and int(checked[0]) == int(rolled.group(2)) + 1
    assert "ranks disagree" not in result.stderr
    state = load(run / "checkpoints" / "last.pt")
    assert state["hooks"]["collapse"]["rollbacks"] == 1
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2.5e-3)


def test_nonfinite_recovery_under_torchrun_keeps_the_ranks_identical(tmp_path):
    run = tmp_path / "run"
    common = [*SMALL, "dataset=fake", "dataset.size=64", "eval.every=0"]
    first = torchrun("-m", "dcgan.cli.train", *common, "epochs=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-4000:]
    result = torchrun("-m", "dcgan.cli.train", f"resume={run}", "epochs=2", "lr=1e30",
                      "nonfinite.policy=rollback", "nonfinite.lr_factor=1e-33")
    assert result.returncode == 0, result.stderr[-4000:]
    log = (run / "train.log").read_text()
    assert re.search(r"non-finite .* at step 5: rolled back to epoch_001\.pt \(step 4\)", log)
    assert log.count("weights identical on all 2 ranks") >= 4 + 4  # both epochs, every step
    state = load(run / "checkpoints" / "last.pt")
    assert state["step"] == 8 and state["hooks"]["nonfinite"]["retries"] == 1
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    assert all(torch.isfinite(t).all() for t in state["generator"].values())


@pytest.mark.parametrize("style", ["concat", "projection"])
def test_a_class_conditional_run_under_torchrun(tmp_path, style):
    """Each rank feeds its share of the digits with their labels and draws its own labels for
    fakes; the replicas stay identical and the checkpoint keeps the classes."""
    run = tmp_path / "run"
    result = torchrun("-m", "dcgan.cli.train", *SMALL, "dataset.image_size=32",
                      "dataset.limit=64", "epochs=1", "condition=class",
                      f"condition.style={style}", "eval.every=0", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run / "train.log").read_text().count("weights identical on all 2 ranks") == 4
    state = load(run / "checkpoints" / "last.pt")
    assert state["labels"]["names"] == [str(digit) for digit in range(10)]
