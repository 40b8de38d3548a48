"""Cheap step checkpoints: a step checkpoint neither re-estimates the sampling generator's
BatchNorm statistics nor rewrites generator.safetensors (epoch ends, best.pt and the end of a
run do), and is written in the background from a copy of the state. Sampling from one
re-estimates the statistics as the run would have; resuming from one trains exactly as an
uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dcgan.nets.batchnorm
import dcgan.store.checkpoints
import dcgan.training.hooks.saving
from dcgan.cli.run import build_trainer
from dcgan.config import validate
from dcgan.data.datasets import build_dataset
from dcgan.errors import DCGANError
from dcgan.store.checkpoints import load_checkpoint, load_generator, save_checkpoint
from dcgan.store.integrity import state_digest
from dcgan.store.writer import BackgroundWriter, snapshot
from dcgan.training.hooks import Hook
from dcgan.training.loop import Trainer
from tests.conftest import TINY, compose_config

# 64 digits, batch 16: 4 steps an epoch; EMA on, so G, its average and the estimate all differ
QUICK = [*TINY, "epochs=2", "eval.every=0", "ema.decay=0.9", "ckpt_every_steps=1", "keep_last=0"]
STATE_KEYS = ("generator", "discriminator", "generator_ema", "opt_g", "opt_d")


def make_trainer(make_config, run_dir: Path, *overrides: str) -> Trainer:
    cfg = make_config(*QUICK, *overrides)
    validate(cfg)
    torch.manual_seed(0)
    return build_trainer(cfg, build_dataset(cfg.dataset), run_dir, torch.device("cpu"))


def same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_tensors(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def stepped(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A 2-epoch run with a step checkpoint at every step; how often it re-estimated the
    statistics and at which steps it wrote the generator file."""
    run_dir = tmp_path_factory.mktemp("stepped")
    counts = {"estimates": 0, "generator_files": []}
    estimate, save_generator = (dcgan.nets.batchnorm.recalibrate_batchnorm,
                                dcgan.training.hooks.saving.save_generator)

    def counted_estimate(*args, **kwargs):
        counts["estimates"] += 1
        return estimate(*args, **kwargs)

    def recorded_save_generator(*args, **kwargs):
        counts["generator_files"].append(kwargs["step"])
        return save_generator(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dcgan.nets.batchnorm, "recalibrate_batchnorm", counted_estimate)
        patch.setattr(dcgan.training.hooks.saving, "save_generator", recorded_save_generator)
        assert make_trainer(compose_config, run_dir).fit().finished
    return run_dir, counts


@pytest.mark.slow
def test_step_checkpoints_neither_estimate_nor_write_the_generator_file(stepped):
    run_dir, counts = stepped
    assert counts["estimates"] == 2  # once an epoch (the grid, then the epoch's checkpoint)
    assert counts["generator_files"] == [4, 8]  # epoch ends only
    folder = run_dir / "checkpoints"
    for step in range(1, 9):
        state = load_checkpoint(folder / f"step_{step:07d}.pt")
        if step <= 4:  # before the first epoch's end there is no estimate yet
            assert "sampling_bn" not in state
        else:  # the newest one, kept with the step it was made for
            assert state["sampling_bn_step"] == 4
    epoch = load_checkpoint(folder / "epoch_002.pt")
    assert epoch["sampling_bn_step"] == epoch["step"] == 8
    assert same_tensors(load_checkpoint(folder / "step_0000005.pt")["sampling_bn"],
                        load_checkpoint(folder / "epoch_001.pt")["sampling_bn"])


@pytest.mark.slow
def test_sampling_from_a_step_checkpoint_re_estimates_as_the_run_would(stepped, make_config,
                                                                       tmp_path):
    run_dir, _ = stepped
    step_checkpoint = run_dir / "checkpoints" / "step_0000006.pt"
    loaded = load_generator(step_checkpoint, torch.device("cpu"))
    # the run's own sampling generator at step 6: a trainer at that state, asked for it
    trainer = make_trainer(make_config, tmp_path)
    trainer.load_state_dict(load_checkpoint(step_checkpoint))
    sampling = trainer.gan.sampling_generator
    noise = torch.randn(16, 16, 1, 1, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(noise), sampling(noise), rtol=1e-4, atol=1e-5)
        stale = load_generator(run_dir / "checkpoints" / "epoch_001.pt", torch.device("cpu"))
        assert not torch.allclose(loaded(noise), stale(noise), atol=1e-3)


@pytest.mark.slow
def test_without_recalibrate_bn_nothing_is_estimated_on_load(make_config, tmp_path,
                                                             monkeypatch):
    trainer = make_trainer(make_config, tmp_path, "ema.recalibrate_bn=false", "epochs=1")
    assert trainer.fit().finished
    state = load_checkpoint(tmp_path / "checkpoints" / "step_0000002.pt")
    assert "sampling_bn" not in state
    monkeypatch.setattr(dcgan.store.checkpoints, "recalibrate_batchnorm",
                        lambda *args: pytest.fail("estimated without ema.recalibrate_bn"))
    loaded = load_generator(tmp_path / "checkpoints" / "step_0000002.pt", torch.device("cpu"))
    assert all(torch.equal(loaded.state_dict()[name], tensor)
               for name, tensor in state["generator_ema"].items())


@pytest.mark.slow
def test_resuming_from_a_step_checkpoint_trains_as_if_never_stopped(stepped, make_config,
                                                                    tmp_path):
    """(That step checkpoints change nothing in a run with recalibrate_bn=false is the
    behaviour reference's; that the estimate does not either, test_adaptive's.)"""
    run_dir, _ = stepped
    straight = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # resumed in the middle of the second epoch, from a checkpoint with a stale estimate
    resumed = make_trainer(make_config, tmp_path)
    resumed.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "step_0000006.pt"))
    assert resumed.fit().finished
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == straight["step"] == 8
    for key in STATE_KEYS:
        assert same_tensors(state[key], straight[key]), key
    assert same_tensors(state["sampling_bn"], straight["sampling_bn"])
    assert same_tensors(state["rng"], straight["rng"])


# -- the background writer --------------------------------------------------------------------

def test_a_snapshot_is_a_copy_later_training_cannot_change():
    weights = torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    metadata = {"": {"version": 1}}
    state_dict = type(torch.nn.Linear(1, 1).state_dict())(w=weights)
    state_dict._metadata = metadata
    payload = {"generator": state_dict, "same": weights, "rng": [torch.arange(3)], "step": 5,
               "config": {"ema": {"decay": 0.9}}}
    copied = snapshot(payload)
    digest = state_digest(payload)
    assert state_digest(copied) == digest  # the same bytes in the same layout
    assert copied["generator"]._metadata == metadata
    assert copied["same"] is copied["generator"]["w"]  # one tensor, one copy
    reused = snapshot(payload, into=copied)
    assert reused["generator"]["w"] is copied["generator"]["w"]  # its memory reused
    weights.add_(1.0)  # a training step
    payload["config"]["ema"]["decay"] = 0.5
    assert state_digest(reused) == digest


def test_a_snapshot_never_copies_two_tensors_into_one_buffer():
    shared = torch.zeros(3)
    earlier = snapshot({"a": shared, "b": shared})
    later = snapshot({"a": torch.ones(3), "b": torch.full((3,), 2.0)}, into=earlier)
    assert later["a"].tolist() == [1.0] * 3 and later["b"].tolist() == [2.0] * 3


def test_a_failed_background_write_is_raised_at_the_next_wait():
    writer = BackgroundWriter()

    def full_disk():
        raise DCGANError("could not write last.pt: No space left on device")

    writer.submit(full_disk)
    with pytest.raises(DCGANError, match="No space left"):
        writer.wait()
    writer.wait()  # reported once


class StopAfter(Hook):
    name = "stop_after"

    def __init__(self, step: int):
        self.step = step

    def after_step(self, loop):
        if loop.step == self.step:
            loop.stop.signum = 15


@pytest.mark.slow
def test_a_stop_writes_the_full_state_after_the_step_checkpoint_in_flight(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path, "epochs=1")
    trainer.hooks[-1:-1] = [StopAfter(2)]  # before the checkpoint hook, as the real ones are
    outcome = trainer.fit()
    assert outcome.signum == 15
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 3 and state["sampling_bn_step"] == 3  # the stop's own, estimated
    assert load_checkpoint(tmp_path / "checkpoints" / "step_0000002.pt")["step"] == 2
    assert not list((tmp_path / "checkpoints").glob(".*.tmp-*"))


def test_a_full_disk_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, [path])
    previous = path.read_bytes()

    def full_disk(payload, handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DCGANError, match="No space left on device.*unchanged"):
        save_checkpoint({"step": 2}, [path, tmp_path / "step_0000002.pt"])
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
