"""The real commands in a subprocess, checked the way a user would check them."""

from pathlib import Path

import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dcgan.store.checkpoints import REQUIRED_KEYS
from tests.conftest import TINY, user_error_line

SCALARS = {"loss/d", "loss/g", "d/real_prob", "d/fake_prob", "perf/img_per_s"}


def read_events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_writes_everything_a_user_looks_for(trained_run):
    run = trained_run
    assert (run / "config.yaml").is_file() and (run / ".hydra" / "config.yaml").is_file()
    for name in ("epoch_001.pt", "epoch_002.pt", "last.pt"):
        assert (run / "checkpoints" / name).is_file()
    for name in ("epoch_001.png", "epoch_002.png"):
        png = Image.open(run / "samples" / name)
        assert png.size == (4 * 66 + 2, 4 * 66 + 2) and png.mode == "L"  # 4x4 grid, 1 channel

    events = read_events(run)
    tags = events.Tags()
    assert SCALARS <= set(tags["scalars"])
    assert {"samples/fixed", "samples/real"} <= set(tags["images"])
    assert len(events.Images("samples/fixed")) == 2  # one grid per epoch
    assert len(events.Images("samples/real")) == 1
    steps = [event.step for event in events.Scalars("loss/d")]
    assert steps == list(range(1, 9))  # 64 images / batch 16 = 4 steps per epoch, log_every=1
    for tag in ("d/real_prob", "d/fake_prob"):
        assert all(0.0 <= e.value <= 1.0 for e in events.Scalars(tag))
    assert all(e.value > 0 for e in events.Scalars("perf/img_per_s"))

    state = load(run / "checkpoints" / "last.pt")
    assert set(REQUIRED_KEYS) <= set(state)
    assert state["epoch"] == 2 and state["step"] == 8
    noise = state["hooks"]["samples"]["fixed_noise"]
    assert noise.shape == (16, 16, 1, 1)
    assert state["config"]["model"]["ngf"] == 8 and state["config"]["dataset"]["name"] == "mnist10k"
    epoch_one = load(run / "checkpoints" / "epoch_001.pt")
    assert torch.equal(epoch_one["hooks"]["samples"]["fixed_noise"], noise)  # fixed for the run
    assert set(state["hooks"]) == {"bad_files", "replicas", "samples", "evaluation", "collapse",
                                   "nonfinite", "augment", "checkpoints"}  # each hook's own state


def test_same_seed_same_losses(cli, tmp_path, trained_run):
    again = tmp_path / "again"
    cli("dcgan-train", *TINY, "epochs=2", f"hydra.run.dir={again}", check=True)
    first = [e.value for e in read_events(trained_run).Scalars("loss/g")]
    second = [e.value for e in read_events(again).Scalars("loss/g")]
    assert first == second


def test_resume_is_bit_identical_and_continues_steps(cli, tmp_path, trained_run):
    run = tmp_path / "resumed"
    cli("dcgan-train", *TINY, "epochs=1", f"hydra.run.dir={run}", check=True)
    result = cli("dcgan-train", f"resume={run}", "epochs=2", check=True)
    assert "resume: epochs changed from 1 to 2" in result.stdout + result.stderr

    straight = load(trained_run / "checkpoints" / "last.pt")
    resumed = load(run / "checkpoints" / "last.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == straight["step"]
    for net in ("generator", "discriminator"):
        for name, tensor in straight[net].items():
            assert torch.equal(tensor, resumed[net][name]), f"{net}.{name} differs"
    steps = sorted(e.step for e in read_events(run).Scalars("loss/d"))
    assert steps == list(range(1, 9))  # one run in TensorBoard, steps continue
    assert len(read_events(run).Images("samples/fixed")) == 2


def test_resume_finished_run_with_more_epochs(cli, tmp_path, trained_run):
    checkpoint = trained_run / "checkpoints" / "last.pt"
    run = tmp_path / "more"
    # a run directory of its own (hydra.run.dir) so the shared trained_run stays as it is
    cli("dcgan-train", f"resume={checkpoint}", "epochs=3", f"hydra.run.dir={run}", check=True)
    state = load(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 3 and state["step"] == 12
    assert (run / "checkpoints" / "epoch_003.pt").is_file()
    assert not (run / "checkpoints" / "epoch_001.pt").exists()  # only the new epoch was trained


def test_resume_refuses_architecture_changes(cli, trained_run):
    line = user_error_line(cli("dcgan-train", f"resume={trained_run}", "model.ngf=16"))
    assert "model.ngf" in line and "architecture" in line
    line = user_error_line(cli("dcgan-train", f"resume={trained_run}", "dataset=celeba"))
    assert "dataset=celeba" in line


def test_resume_from_missing_path(cli, tmp_path):
    line = user_error_line(cli("dcgan-train", f"resume={tmp_path / 'nothing'}",
                               f"hydra.run.dir={tmp_path / 'run'}"))
    assert "does not exist" in line


def test_missing_data_folder_is_one_line(cli, tmp_path):
    line = user_error_line(cli("dcgan-train", "dataset=folder",
                               f"dataset.root={tmp_path / 'absent'}",
                               f"hydra.run.dir={tmp_path / 'run'}"))
    assert "does not exist" in line


def test_empty_data_folder_is_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    line = user_error_line(cli("dcgan-train", "dataset=folder", f"dataset.root={tmp_path / 'empty'}",
                               f"hydra.run.dir={tmp_path / 'run'}"))
    assert "no images in" in line


def test_train_on_an_image_folder_rgb(cli, tmp_path):
    images = tmp_path / "pictures"
    images.mkdir()
    for index in range(20):
        Image.new("RGB", (80, 60), (index * 12, 100, 200)).save(images / f"{index}.png")
    run = tmp_path / "run"
    cli("dcgan-train", *TINY, "dataset=folder", f"dataset.root={images}", "batch_size=8",
        "epochs=1", "num_workers=1", f"hydra.run.dir={run}", check=True)
    assert Image.open(run / "samples" / "epoch_001.png").mode == "RGB"
    assert load(run / "checkpoints" / "last.pt")["arch"]["channels"] == 3


# -- dcgan-sample ------------------------------------------------------------------------------

def test_sample_grid_and_files(cli, trained_run, tmp_path):
    out = tmp_path / "grid.png"
    cli("dcgan-sample", "--ckpt", str(trained_run), "--n", "16", "--out", str(out),
        "--out-dir", str(tmp_path / "each"), check=True)
    grid = Image.open(out)
    assert grid.size == (266, 266) and grid.mode == "L"
    singles = sorted((tmp_path / "each").glob("*.png"))
    assert len(singles) == 16
    assert Image.open(singles[0]).size == (64, 64)


def test_sample_nrow_and_seed(cli, trained_run, tmp_path):
    checkpoint = str(trained_run / "checkpoints" / "epoch_001.pt")
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    cli("dcgan-sample", "--ckpt", checkpoint, "--n", "6", "--nrow", "3", "--seed", "7",
        "--out", str(a), check=True)
    cli("dcgan-sample", "--ckpt", checkpoint, "--n", "6", "--nrow", "3", "--seed", "7",
        "--out", str(b), check=True)
    cli("dcgan-sample", "--ckpt", checkpoint, "--n", "6", "--nrow", "3", "--seed", "8",
        "--out", str(c), check=True)
    assert Image.open(a).size == (3 * 66 + 2, 2 * 66 + 2)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_sample_default_output_goes_to_the_run(cli, trained_run):
    result = cli("dcgan-sample", "--ckpt", str(trained_run), "--n", "4", check=True)
    written = trained_run / "samples" / "sample_seed0_n4.png"
    assert written.is_file() and str(written) in result.stderr + result.stdout


def test_sample_errors_are_one_line(cli, tmp_path, trained_run):
    assert "does not exist" in user_error_line(
        cli("dcgan-sample", "--ckpt", str(tmp_path / "none.pt")))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    assert "junk.pt" in user_error_line(cli("dcgan-sample", "--ckpt", str(junk)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained_run / "checkpoints" / "last.pt").read_bytes()[:5000])
    assert "truncated" in user_error_line(cli("dcgan-sample", "--ckpt", str(truncated)))


def test_progress_gif_animates_every_epochs_grid(trained_run):
    samples = trained_run / "samples"
    with Image.open(samples / "progress.gif") as gif:
        assert gif.is_animated and gif.n_frames == 2 and gif.info["loop"] == 0
        for index in range(gif.n_frames):
            gif.seek(index)
            with Image.open(samples / f"epoch_{index + 1:03d}.png") as grid:
                assert gif.size == grid.size
                # a grayscale grid survives the GIF palette exactly
                assert list(gif.convert("L").getdata()) == list(grid.convert("L").getdata())
    assert not list(samples.glob(".*.tmp-*"))
