"""Quality during training and after it: metrics/ in TensorBoard, checkpoints/best.pt,
`dcgan-eval`, every stabiliser wired into the trainer, and the collapse policies acting on a
run that is made to collapse."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from dcgan.cli.run import build_trainer
from dcgan.config import validate
from dcgan.data.datasets import build_dataset
from dcgan.store.checkpoints import load_checkpoint, load_generator, load_generator_file
from dcgan.training.loop import Trainer
from tests.conftest import TINY, user_error_line

# A discriminator that learns 100x faster than its generator wins within a few dozen steps:
# D loss falls towards 0, D(x) -> 1, D(G(z)) -> 0, G loss climbs. This is the failure the
# detector exists for, produced for real rather than faked.
COLLAPSING = ["lr_g=1e-6", "lr_d=5e-3", "collapse.patience=3", "collapse.g_loss_ceiling=4",
              "collapse.d_loss_floor=0.1", "epochs=12", "keep_last=0"]


def read_scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_texts(run_dir: Path) -> list[str]:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    texts = []
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            texts += [value.decode() for value in event.tensor_proto.string_val]
    return texts


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    from tests.conftest import run_cli

    run_dir = tmp_path_factory.mktemp("quality") / "run"
    run_cli("dcgan-train", *TINY, "epochs=3", "eval.n_samples=48", f"hydra.run.dir={run_dir}",
            check=True)
    return run_dir


def test_training_logs_metrics_every_epoch_and_keeps_the_best(evaluated_run):
    scalars = read_scalars(evaluated_run)
    for tag in ("metrics/swd/mean", "metrics/swd/64", "metrics/swd/16", "metrics/diversity"):
        assert len(scalars[tag]) == 3, tag  # one evaluation per epoch
    swd = scalars["metrics/swd/mean"]
    best = load_checkpoint(evaluated_run / "checkpoints" / "best.pt")
    assert best["hooks"]["checkpoints"]["best_value"] == pytest.approx(min(swd), rel=1e-6)
    assert best["hooks"]["evaluation"]["metrics"]["swd/mean"] == pytest.approx(min(swd), rel=1e-6)
    assert best["epoch"] == 1 + swd.index(min(swd))


def test_dcgan_eval_reproduces_the_training_evaluation(evaluated_run, cli):
    best = load_checkpoint(evaluated_run / "checkpoints" / "best.pt")
    result = cli("dcgan-eval", "--ckpt", str(evaluated_run / "checkpoints" / "best.pt"),
                 "--n", "48", check=True)
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("swd/mean") for line in lines)  # the table
    measured = json.loads(lines[-1])  # and one JSON line
    assert measured["n"] == 48 and measured["epoch"] == best["epoch"]
    for key in ("swd/mean", "swd/64", "diversity"):
        assert measured[key] == pytest.approx(best["hooks"]["evaluation"]["metrics"][key],
                                              rel=1e-4), key


def test_dcgan_eval_refusals(evaluated_run, cli, tmp_path):
    ckpt = str(evaluated_run / "checkpoints" / "last.pt")
    line = user_error_line(cli("dcgan-eval", "--ckpt", ckpt, "lr=1"))
    assert "dataset.KEY=VALUE" in line
    line = user_error_line(cli("dcgan-eval", "--ckpt", str(evaluated_run / "checkpoints" /
                                                           "generator.safetensors")))
    assert "name one" in line
    line = user_error_line(cli("dcgan-eval", "--ckpt", ckpt, "--fid", "--inception-weights",
                               str(tmp_path / "missing.pth")))
    assert "pt_inception-2015-12-05-6726825d.pth" in line


# -- each stabiliser, in the real trainer ------------------------------------------------------

def fit(make_config, tmp_path, *overrides: str) -> Trainer:
    cfg = make_config(*TINY, "epochs=2", "eval.every=0", *overrides)
    validate(cfg)
    torch.manual_seed(0)
    trainer = build_trainer(cfg, build_dataset(cfg.dataset), tmp_path, torch.device("cpu"))
    assert trainer.fit().finished
    return trainer


def adam_steps(optimizer: torch.optim.Optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


@pytest.mark.parametrize("loss", ["hinge", "lsgan", "wgan_gp"])
def test_each_loss_trains_with_finite_values(make_config, tmp_path, loss):
    trainer = fit(make_config, tmp_path, f"loss={loss}")
    assert all(math.isfinite(v) for v in trainer.last_metrics.values())
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in trainer.gan.discriminator.modules())
    assert has_bn == (loss != "wgan_gp")  # WGAN-GP: no BatchNorm in D
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["arch"]["d_batchnorm"] == has_bn


def test_d_steps_takes_one_g_step_per_k_batches(make_config, tmp_path):
    trainer = fit(make_config, tmp_path, "d_steps=2")
    assert adam_steps(trainer.gan.opt_d) == trainer.step == 8  # 2 epochs x 4 batches
    assert adam_steps(trainer.gan.opt_g) == 4


def test_two_time_scale_learning_rates(make_config, tmp_path):
    trainer = fit(make_config, tmp_path, "lr_g=1e-4", "lr_d=4e-4")
    assert trainer.gan.opt_g.param_groups[0]["lr"] == 1e-4
    assert trainer.gan.opt_d.param_groups[0]["lr"] == 4e-4


def test_spectral_norm_keeps_d_layers_at_unit_norm(make_config, tmp_path):
    trainer = fit(make_config, tmp_path, "model.spectral_norm=true")
    convs = [m for m in trainer.gan.discriminator.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.1)


def test_ema_generator_is_what_samples_and_the_generator_file_use(make_config, tmp_path):
    trainer = fit(make_config, tmp_path, "ema.decay=0.9")
    live = trainer.gan.generator.state_dict()
    averaged = trainer.gan.sampling_generator.state_dict()
    assert not torch.equal(live["main.0.weight"], averaged["main.0.weight"])
    weights, _ = load_generator_file(tmp_path / "checkpoints" / "generator.safetensors")
    assert torch.equal(weights["main.0.weight"], averaged["main.0.weight"].cpu())
    sampled = load_generator(tmp_path / "checkpoints" / "last.pt", torch.device("cpu"))
    assert torch.equal(sampled.state_dict()["main.0.weight"], averaged["main.0.weight"])


def test_augmentation_noise_and_label_smoothing_train(make_config, tmp_path):
    trainer = fit(make_config, tmp_path, "augment=[color,translation,cutout]",
                  "instance_noise.std=0.2", "real_label=0.9", "label_flip=0.05")
    assert all(math.isfinite(v) for v in trainer.last_metrics.values())
    assert trainer.gan.settings.noise.std_at(trainer.step) == pytest.approx(0.0, abs=1e-9)


def test_instance_noise_anneals_from_its_start(make_config, tmp_path):
    cfg = make_config(*TINY, "epochs=4", "instance_noise.std=0.2")
    noise = build_trainer(cfg, build_dataset(cfg.dataset), tmp_path,
                          torch.device("cpu")).gan.settings.noise
    assert noise.std_at(0) == pytest.approx(0.2)
    assert noise.std_at(8) == pytest.approx(0.1)  # half of 4 epochs x 4 batches


def test_stabilised_run_resumes_with_its_settings(make_config, tmp_path, cli):
    run_dir = tmp_path / "run"
    options = ["ema.decay=0.9", "model.spectral_norm=true", "augment=[translation]",
               "eval.n_samples=32"]
    cli("dcgan-train", *TINY, *options, "epochs=1", f"hydra.run.dir={run_dir}", check=True)
    cli("dcgan-train", f"resume={run_dir}", "epochs=2", check=True)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and "generator_ema" in state
    result = cli("dcgan-train", f"resume={run_dir}", "model.spectral_norm=false", "epochs=3")
    assert "model.spectral_norm" in user_error_line(result)


@pytest.mark.parametrize("recipe, dataset, augment, p, mirror, ema", [
    # issue 12's study: mirroring and a half-life in images won on the faces
    ("celeba_stable", "celeba", ["translation", "color", "cutout"], 1.0, True,
     {"decay": 0.0, "half_life_images": 10000, "start_step": 100}),
    # digits have a handedness: no mirroring
    ("mnist_stable", "mnist", ["translation", "cutout"], "ada", False,
     {"decay": 0.99, "half_life_images": None, "start_step": 100}),
])
def test_stable_recipes_compose_with_the_textbook_networks(make_config, recipe, dataset, augment,
                                                          p, mirror, ema):
    cfg = make_config(f"+experiment={recipe}", "dataset.root=somewhere")
    validate(cfg)
    assert cfg.dataset.name == dataset and list(cfg.augment.ops) == augment
    assert cfg.augment.p == p and cfg.dataset.mirror == mirror
    assert cfg.real_label == 0.9 and {key: cfg.ema[key] for key in ema} == ema
    # the same networks, loss and optimiser as the paper: only stabilisers differ
    textbook = make_config(f"dataset={dataset}", "dataset.root=somewhere")
    for key in ("model", "loss", "lr", "beta1", "beta2", "batch_size"):
        assert cfg[key] == textbook[key], key


# -- the collapse policies, on a run made to collapse -------------------------------------------

def test_warn_policy_reports_collapse_and_goes_on(cli, tmp_path):
    run_dir = tmp_path / "warn"
    result = cli("dcgan-train", *TINY, *COLLAPSING, "collapse.policy=warn", "eval.every=0",
                 f"hydra.run.dir={run_dir}", check=True)
    output = result.stdout + result.stderr  # Hydra's logging goes to stdout
    assert "collapse detected" in output and "d_wins" in output
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 12
    assert any("d_wins" in text for text in read_texts(run_dir))


def test_stop_policy_checkpoints_and_exits(cli, tmp_path):
    run_dir = tmp_path / "stop"
    result = cli("dcgan-train", *TINY, *COLLAPSING, "collapse.policy=stop", "eval.every=0",
                 f"hydra.run.dir={run_dir}")
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("dcgan: error: stopped at step")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert 0 < state["epoch"] < 12


def test_rollback_policy_reloads_a_healthy_checkpoint_and_stabilises(cli, tmp_path):
    run_dir = tmp_path / "rollback"
    # this run collapses within a few steps, so step checkpoints give it a healthy one to reload
    result = cli("dcgan-train", *TINY, *COLLAPSING, "collapse.policy=rollback",
                 "collapse.rollback.max_rollbacks=1", "eval.every=0", "ckpt_every_steps=1",
                 f"hydra.run.dir={run_dir}")
    output = result.stdout + result.stderr
    # back to a step checkpoint from before the streak of collapsed windows began
    match = re.search(r"rolled back to step_(\d+)\.pt .* after d_\w+ at step (\d+)", output)
    assert match, output[-3000:]
    onset = int(re.search(r"since step (\d+)", output).group(1))
    assert int(match.group(1)) < onset <= int(match.group(2))
    assert list((run_dir / "checkpoints" / "abandoned").glob("step_*.pt"))  # the dropped course
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    guard = state["hooks"]["collapse"]
    assert guard["stabilisers"]["lr_d_scale"] == 0.5
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2.5e-3)  # halved
    assert state["step"] > 1  # it went on training after the rollback
    assert guard["stabilisers"]["instance_noise"] == pytest.approx(0.1)
    assert guard["stabilisers"]["real_label"] == 0.9
    assert guard["rollbacks"] == 1
    assert state["config"]["lr_d"] == 5e-3  # the config says what the user asked for
    # with the single rollback spent, a second collapse stops; otherwise the run finished
    assert result.returncode in (0, 4), result.stderr[-2000:]
    if result.returncode == 4:
        assert "after 1 rollback" in result.stderr.splitlines()[-1]
