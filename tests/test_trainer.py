"""The loop in-process: it calls the hooks at fixed points, acts on what they answer (stop,
roll back), stops on a signal, and keeps each hook's state in the checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from omegaconf.errors import ReadonlyConfigError

from dcgan.cli.run import build_trainer
from dcgan.config import validate
from dcgan.data.datasets import build_dataset
from dcgan.store.checkpoints import load_checkpoint
from dcgan.training.hooks import Hook, RollBack, Stop
from dcgan.training.loop import Trainer
from tests.conftest import TINY

QUICK = [*TINY, "epochs=2", "eval.every=0"]  # 64 digits, batch 16: 4 steps an epoch


class Recorder(Hook):
    """Writes down every call; answers what `answers` says at (point, step); counts calls in
    its own state."""

    name = "recorder"

    def __init__(self, answers: dict | None = None):
        self.calls: list[tuple[str, int]] = []
        self.answers = answers or {}
        self.count = 0

    def _record(self, point: str, loop: Trainer):
        self.calls.append((point, loop.step))
        self.count += 1
        return self.answers.pop((point, loop.step), None)

    def on_fit_start(self, loop):
        self._record("on_fit_start", loop)

    def on_batch(self, loop, bad_paths):
        self._record("on_batch", loop)

    def after_step(self, loop):
        self._record("after_step", loop)

    def after_window(self, loop, values):
        assert {"loss_d", "loss_g", "real_prob", "fake_prob", "img_per_s"} <= set(values)
        return self._record("after_window", loop)

    def on_epoch_end(self, loop):
        return self._record("on_epoch_end", loop)

    def after_rollback(self, loop, path):
        self._record(f"after_rollback {path.name}", loop)

    def on_fit_end(self, loop):
        self._record("on_fit_end", loop)

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state.get("count", 0)


def make_trainer(make_config, run_dir: Path, *overrides: str, hooks=()) -> Trainer:
    cfg = make_config(*QUICK, *overrides)
    validate(cfg)
    torch.manual_seed(0)
    trainer = build_trainer(cfg, build_dataset(cfg.dataset), run_dir, torch.device("cpu"))
    trainer.hooks[-1:-1] = list(hooks)  # before the checkpoint hook, as the real ones are
    return trainer


def test_hooks_are_called_at_fixed_points(make_config, tmp_path):
    recorder = Recorder()
    outcome = make_trainer(make_config, tmp_path, "log_every=2", hooks=[recorder]).fit()
    assert outcome.finished and outcome.signum is None and outcome.reason is None
    epoch = lambda first: [("on_batch", first), ("after_step", first + 1),  # noqa: E731
                           ("on_batch", first + 1), ("after_window", first + 2),
                           ("after_step", first + 2), ("on_batch", first + 2),
                           ("after_step", first + 3), ("on_batch", first + 3),
                           ("after_window", first + 4), ("after_step", first + 4),
                           ("on_epoch_end", first + 4)]
    assert recorder.calls == [("on_fit_start", 0), *epoch(0), *epoch(4), ("on_fit_end", 8)]


def test_a_stop_answer_ends_the_run_with_the_state_saved(make_config, tmp_path):
    recorder = Recorder({("after_window", 3): Stop("stopped by the test")})
    outcome = make_trainer(make_config, tmp_path, hooks=[recorder]).fit()
    assert not outcome.finished
    assert outcome.reason.startswith("stopped by the test; the state is in")
    state = load_checkpoint(outcome.checkpoint)
    assert state["step"] == 3 and state["hooks"]["recorder"]["count"] == recorder.count
    assert ("after_step", 3) not in recorder.calls  # the loop acted at once


def test_a_rollback_answer_reloads_the_checkpoint_from_before_the_onset(make_config, tmp_path):
    recorder = Recorder({("after_window", 6): RollBack(onset=4, reason="test")})
    trainer = make_trainer(make_config, tmp_path, "ckpt_every_steps=1", "keep_last=0",
                           hooks=[recorder])
    outcome = trainer.fit()
    assert outcome.finished
    rolled = recorder.calls.index(("after_rollback step_0000003.pt", 3))
    assert recorder.calls[rolled + 1] == ("on_batch", 3)  # and trained on from step 3
    assert trainer.step == 8 and trainer.epoch == 2
    abandoned = sorted(p.name for p in (tmp_path / "checkpoints" / "abandoned").iterdir())
    # step 6 answered before its step checkpoint was written
    assert abandoned == ["epoch_001.pt", "step_0000004.pt", "step_0000005.pt"]


def test_a_rollback_with_nothing_to_go_back_to_stops(make_config, tmp_path):
    recorder = Recorder({("after_window", 2): RollBack(onset=1, reason="test collapse")})
    outcome = make_trainer(make_config, tmp_path, hooks=[recorder]).fit()
    assert outcome.reason.startswith("test collapse; no checkpoint from before step 1")


def test_a_signal_stops_after_the_step_and_saves(make_config, tmp_path):
    class StopAtStep5(Hook):
        def after_step(self, loop):
            if loop.step == 5:
                loop.stop.signum = signal.SIGTERM

    outcome = make_trainer(make_config, tmp_path, hooks=[StopAtStep5()]).fit()
    assert outcome.signum == signal.SIGTERM and not outcome.finished
    state = load_checkpoint(outcome.checkpoint)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 2)


def test_hook_state_comes_back_on_resume(make_config, tmp_path):
    first = Recorder()
    make_trainer(make_config, tmp_path, hooks=[first]).fit()
    second = Recorder()
    trainer = make_trainer(make_config, tmp_path, hooks=[second])
    trainer.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "last.pt"))
    assert second.count == first.count - 1  # saved before on_fit_end was counted
    assert (trainer.epoch, trainer.step) == (2, 8)


def test_the_config_is_read_only_once_training_starts(make_config, tmp_path):
    from dcgan.cli.run import train

    cfg = make_config(*QUICK, "epochs=1")
    train(cfg, [], tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    with pytest.raises(ReadonlyConfigError):
        cfg.lr = 1.0
