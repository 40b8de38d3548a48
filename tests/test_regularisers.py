"""The regularisers of D made for small data sets (reg.lecam, reg.r1, reg.bcr) and the
learning-rate tail (lr_schedule=linear_tail): the penalties as the papers write them, what the
pair does with them, what the checkpoint keeps, and what the config refuses."""

import dataclasses

import pytest
import torch
from torch import nn

from dcgan.config import gan_settings, resolve, validate
from dcgan.data.datasets import FakeImages
from dcgan.errors import DCGANError
from dcgan.nets.regularisers import (
    LeCamAnchors,
    consistency_penalty,
    lecam_penalty,
    r1_penalty,
)
from dcgan.runtime.process import seed_everything
from dcgan.training.hooks.lr_tail import LearningRateTail, LRTailSettings, tail_factor
from dcgan.training.pair import GANPair
from dcgan.training.step import StepPlan
from tests.conftest import TINY, user_error_line

# 32x32 and no BatchNorm re-estimation in state_dict: a quarter of the work per step
FAKE = [*TINY, "dataset=fake", "dataset.size=64", "dataset.image_size=32", "ema.recalibrate_bn=false"]
REAL = torch.stack([FakeImages(64, 3, 32)[i] for i in range(64)])
ALL_REGULARISERS = ["reg.lecam.weight=0.3", "reg.r1.gamma=1", "reg.r1.interval=2",
                    "reg.bcr.real=1", "reg.bcr.fake=1"]


class Linear(nn.Module):
    """D(x) = w . x: grad_x D = w for every image."""

    def __init__(self, features: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def make_pair(make_config, *overrides: str) -> GANPair:
    cfg = make_config(*FAKE, *overrides)
    validate(cfg)
    seed_everything(cfg.seed)
    return GANPair(gan_settings(cfg, steps_per_epoch=4), torch.device("cpu"))


def train(pair: GANPair, steps: int, first_step: int = 0) -> list[dict[str, float]]:
    batches = REAL.split(16)
    return [{k: v.item() for k, v in pair.train_step(batches[step], step).items()}
            for step in range(first_step, first_step + steps)]


# -- the penalties ---------------------------------------------------------------------------

def test_r1_is_half_gamma_times_the_squared_input_gradient():
    d = Linear(12)
    penalty = r1_penalty(d, torch.randn(5, 3, 2, 2), gamma=4.0)
    assert penalty.item() == pytest.approx(2.0 * d.w.detach().square().sum().item(), rel=1e-5)
    penalty.backward()  # the graph reaches D's weights: d/dw (2 |w|^2) = 4 w
    assert torch.allclose(d.w.grad, 4.0 * d.w.detach(), rtol=1e-5)


def test_lecam_penalises_only_outputs_past_the_other_kinds_anchor():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 2.0])
    # relu(real - 0.5)^2 = [0.25, 6.25]; relu(2.0 - fake)^2 = [9, 0]
    assert lecam_penalty(real, fake, torch.tensor(2.0), torch.tensor(0.5)).item() == 7.75
    assert lecam_penalty(real, fake, torch.tensor(-5.0), torch.tensor(5.0)).item() == 0.0


def test_lecam_anchors_move_by_one_minus_decay_and_round_trip():
    anchors = LeCamAnchors(0.9, torch.device("cpu"))
    anchors.update(torch.tensor(1.0), torch.tensor(-2.0))
    assert (anchors.real.item(), anchors.fake.item()) == pytest.approx((0.1, -0.2))
    copy = LeCamAnchors(0.9, torch.device("cpu"))
    copy.load_state_dict(anchors.state_dict())
    assert (copy.real.item(), copy.fake.item()) == (anchors.real.item(), anchors.fake.item())


def test_consistency_is_zero_for_an_invariant_d_and_positive_otherwise():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    constant = lambda x: torch.zeros(x.shape[0])  # noqa: E731
    assert consistency_penalty(constant, images, constant(images), ("translation",)).item() == 0
    mean = lambda x: x.mean(dim=(1, 2, 3))  # noqa: E731
    assert consistency_penalty(mean, images, mean(images), ("cutout",)).item() > 0


# -- the pair --------------------------------------------------------------------------------

def test_r1_is_a_kind_of_step_on_its_interval(make_config):
    pair = make_pair(make_config, "reg.r1.gamma=1", "reg.r1.interval=4")
    plans = [StepPlan.of(pair.settings, pair.ema, step, 16) for step in range(8)]
    assert [plan.r1 for plan in plans] == [False, False, False, True] * 2
    assert plans[3].kind != plans[2].kind  # a CUDA graph per kind: R1 steps get their own


@pytest.mark.parametrize("overrides", [["reg.lecam.weight=0.3"], ["reg.r1.gamma=1",
                         "reg.r1.interval=1"], ["reg.bcr.real=1"], ["reg.bcr.fake=1"]],
                         ids=["lecam", "r1", "bcr-real", "bcr-fake"])
def test_each_regulariser_changes_training_and_is_logged(make_config, overrides):
    plain = train(make_pair(make_config), 2)
    regularised = train(make_pair(make_config, *overrides), 2)
    assert "loss_reg" not in plain[0] and regularised[0]["loss_reg"] > 0
    assert plain[0]["loss_d"] == regularised[0]["loss_d"]  # the same first forward pass ...
    assert plain[1]["loss_d"] != regularised[1]["loss_d"]  # ... then D was updated differently


@pytest.mark.parametrize("loss", ["bce", "hinge", "lsgan", "wgan_gp"])
def test_the_regularisers_work_with_every_loss_they_make_sense_for(make_config, loss):
    overrides = [f"loss={loss}", "reg.lecam.weight=0.3", "reg.bcr.real=1", "reg.bcr.fake=1"]
    if loss != "wgan_gp":
        overrides += ["reg.r1.gamma=1", "reg.r1.interval=2"]
    steps = train(make_pair(make_config, *overrides), 3)
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in steps)


def test_bf16_trains_with_every_regulariser(make_config):
    steps = train(make_pair(make_config, "precision=bf16", *ALL_REGULARISERS), 2)
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in steps)


def test_lecam_state_resumes_exactly(make_config):
    """Two steps, a checkpoint, two more: the same as four straight (the anchors come back)."""
    straight = make_pair(make_config, *ALL_REGULARISERS)
    expected = train(straight, 4)
    first = make_pair(make_config, *ALL_REGULARISERS)
    train(first, 2)
    state = first.state_dict()
    assert set(state["lecam"]) == {"real", "fake"}
    rng = torch.get_rng_state()
    second = make_pair(make_config, *ALL_REGULARISERS)
    second.load_state_dict(state)
    torch.set_rng_state(rng)
    assert train(second, 2, first_step=2) == expected[2:]
    assert second.regularisers.lecam.real.item() == straight.regularisers.lecam.real.item()


def test_a_checkpoint_without_regularisers_has_no_new_entries(make_config):
    assert "lecam" not in make_pair(make_config).state_dict()


# -- the learning-rate tail ------------------------------------------------------------------

def test_the_tail_falls_linearly_in_stages_over_the_last_fraction():
    settings = LRTailSettings(fraction=0.5, total_steps=200, stages=10)
    assert [tail_factor(step, settings) for step in (0, 99, 100)] == [1.0, 1.0, 1.0]
    assert tail_factor(110, settings) == pytest.approx(0.9)
    assert tail_factor(150, settings) == pytest.approx(0.5)
    assert tail_factor(199, settings) == pytest.approx(0.1)
    assert tail_factor(10_000, settings) == pytest.approx(0.1)  # never 0: Adam would stand still
    factors = [tail_factor(step, settings) for step in range(200)]
    assert factors == sorted(factors, reverse=True) and len(set(factors)) == 10


class FakeLoop:
    def __init__(self, hook: LearningRateTail, pair: GANPair):
        self.hook, self.gan, self.base_settings, self.step = hook, pair, pair.settings, 0

    def refresh_settings(self) -> None:
        self.gan.reconfigure(self.hook.adjust(self.base_settings))


def test_the_tail_hook_lowers_both_optimisers_rates(make_config):
    pair = make_pair(make_config, "lr=1e-3")
    hook = LearningRateTail(LRTailSettings(fraction=0.5, total_steps=20, stages=10))
    loop = FakeLoop(hook, pair)
    hook.on_fit_start(loop)
    for loop.step in range(1, 21):
        hook.after_step(loop)
        if loop.step == 10:
            assert pair.opt_d.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert pair.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert pair.opt_d.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert hook.window_scalars(loop) == {"lr_factor": pytest.approx(0.1)}


def test_the_run_settings_carry_the_tail_only_when_asked(make_config):
    assert resolve(make_config(*FAKE), steps_per_epoch=4).lr_tail is None
    tail = resolve(make_config(*FAKE, "lr_schedule=linear_tail", "lr_tail_fraction=0.25",
                               "epochs=3"), steps_per_epoch=4).lr_tail
    assert tail == LRTailSettings(fraction=0.25, total_steps=12)


# -- what the config refuses -----------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    (["loss=wgan_gp", "reg.r1.gamma=1"], "loss=wgan_gp has its own"),
    (["reg.lecam.weight=-1"], "reg.lecam.weight must be 0 or more"),
    (["reg.lecam.decay=1"], "reg.lecam.decay must be in [0, 1)"),
    (["reg.r1.interval=0"], "reg.r1.interval must be at least 1"),
    (["reg.bcr.real=1", "reg.bcr.ops=[]"], "at least one operation"),
    (["reg.bcr.ops=[rotate]"], "unknown operation 'rotate'"),
    (["lr_tail_fraction=0"], "lr_tail_fraction must be in (0, 1]"),
])
def test_bad_settings_are_refused_in_one_line(make_config, overrides, words):
    with pytest.raises(DCGANError, match=None) as error:
        validate(make_config(*FAKE, *overrides))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_cli_refuses_r1_with_wgan_gp_before_training(cli, tmp_path):
    result = cli("dcgan-train", *FAKE, "loss=wgan_gp", "reg.r1.gamma=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert "loss=wgan_gp has its own" in user_error_line(result)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_settings_are_frozen_values(make_config):
    settings = gan_settings(make_config(*FAKE, *ALL_REGULARISERS), steps_per_epoch=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.reg.r1.gamma = 0.0  # type: ignore[misc]


def test_a_run_with_the_tail_equals_a_constant_run_until_the_tail_starts(cli, tmp_path):
    """What lets a tail run start from a constant run's checkpoint at the tail's first step."""
    common = [*TINY, "dataset=fake", "dataset.size=64", "epochs=2", "eval.every=0"]
    for name, schedule in (("constant", []), ("tail", ["lr_schedule=linear_tail",
                                                        "lr_tail_fraction=0.5"])):
        result = cli("dcgan-train", *common, *schedule, f"hydra.run.dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr[-2000:]
    weights = [torch.load(tmp_path / name / "checkpoints" / "epoch_001.pt",
                          weights_only=True)["generator"] for name in ("constant", "tail")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    last = [torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
            for name in ("constant", "tail")]
    assert not torch.equal(last[0]["generator"]["main.0.weight"],
                           last[1]["generator"]["main.0.weight"])
