"""The captured training step (dcgan.training.graphs) without a GPU: a CPU stand-in for CUDA graphs
replays each kind of step by running it again on the graph's static inputs, so everything
but the capture itself is checked here: the static batch and per-step numbers are filled
before each replay, steps are sorted into kinds, eager steps remain where they must, the
graphs are dropped when what they bake in changes, and the result is bit for bit the eager
step's. The capture on a GPU is in tests/test_cuda.py."""

import dataclasses

import pytest
import torch

from dcgan.config import gan_settings
from dcgan.errors import DCGANError
from dcgan.runtime.process import seed_everything
from dcgan.training.graphs import StepGraphs, eager_only_reason, graphs_wanted
from dcgan.training.pair import GANPair
from dcgan.training.step import StepPlan
from tests.test_gan import FAKE, REAL

# augmentation at a chance between 0 and 1, annealed instance noise, an EMA horizon with a
# ramp-up (its weight changes every step) and a G step every second step: every per-step
# number a graph reads from the device, and two kinds of step
DYNAMIC = ["augment=[translation,color,cutout]", "augment.p=0.4", "instance_noise.std=0.1",
           "ema.half_life_images=200", "ema.rampup=0.5", "d_steps=2"]


class ReplayOnCPU:
    """Stands in for CudaGraphBackend: 'capturing' records the step without running it, as
    CUDA does, and a replay runs it again on the static inputs the runner filled."""

    def __init__(self):
        self.captures = self.replays = self.warmups = 0

    def warmup(self, body):
        self.warmups += 1
        return body()

    def capture(self, body):
        self.captures += 1

        def replay():
            self.replays += 1
            return body()
        return replay


def make_pair(make_config, *overrides) -> GANPair:
    cfg = make_config(*FAKE, *DYNAMIC, *overrides)
    seed_everything(cfg.seed)
    return GANPair(gan_settings(cfg, steps_per_epoch=4), torch.device("cpu"))


def with_graphs(pair: GANPair, warmup: int = 1) -> ReplayOnCPU:
    backend = ReplayOnCPU()
    pair.graphs = StepGraphs(pair, backend=backend, warmup=warmup)
    return backend


def train(pair: GANPair, steps: int, batch: int = 16, checked_every: int = 5,
          p_every: int = 3) -> list[dict[str, torch.Tensor]]:
    """`steps` steps; losses checked on the host every `checked_every`-th step (those run
    eagerly) and p moved as adaptive augmentation would, every `p_every` steps."""
    images = torch.stack([REAL[i % len(REAL)] for i in range(batch * steps)]).split(batch)
    out = []
    for step, real in enumerate(images):
        if step and step % p_every == 0:
            pair.reconfigure(dataclasses.replace(pair.settings,
                                                 augment_p=0.2 + (0.05 * step) % 0.7))
        out.append(pair.train_step(real, step, check_finite=(step + 1) % checked_every == 0))
    return out


def state(pair: GANPair) -> dict:
    """The pair's checkpoint state, less Adam's capturable flag (set where graphs are on)."""
    state = {key: value for key, value in pair.state_dict().items() if key != "arch"}
    for optimizer in ("opt_g", "opt_d"):
        for group in state[optimizer]["param_groups"]:
            group.pop("capturable")
    return state


def assert_identical(a, b, where="state"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_replayed_steps_train_bit_for_bit_as_eager_ones(make_config):
    eager = make_pair(make_config)
    eager_metrics = train(eager, steps=12)
    replayed = make_pair(make_config)
    backend = with_graphs(replayed)
    replayed_metrics = train(replayed, steps=12)
    assert backend.replays >= 6  # most steps came from the graphs, not from warm-up
    assert len(replayed.graphs.captured) == 2  # with a G step and without
    for step, (a, b) in enumerate(zip(eager_metrics, replayed_metrics)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"step {step + 1}: {key}"
    assert_identical(state(eager), state(replayed))
    # a state saved without graphs brings capturable=False back; the graphs need it on
    replayed.load_state_dict(eager.state_dict())
    assert all(group["capturable"] for optimizer in (replayed.opt_g, replayed.opt_d)
               for group in optimizer.param_groups)
    assert_identical(eager.ema.state_dict(), replayed.ema.state_dict())


def test_replay_reads_the_new_batch_and_numbers_each_time(make_config):
    pair = make_pair(make_config, "d_steps=1")
    backend = with_graphs(pair)
    train(pair, steps=4, checked_every=100, p_every=100)
    captured = pair.graphs.captured[StepPlan.of(pair.settings, pair.ema, 4, 16).kind]
    batch = torch.stack([REAL[i] for i in range(16, 32)])
    pair.train_step(batch, 4, check_finite=False)
    assert torch.equal(captured.real, batch)
    plan = StepPlan.of(pair.settings, pair.ema, 4, 16)
    assert captured.numbers.tolist() == pytest.approx([0.4, plan.noise_std, plan.ema_weight])
    assert backend.replays == 4  # steps 2-5: step 1 warmed up


def test_a_batch_of_another_shape_and_checked_steps_run_eagerly(make_config):
    pair = make_pair(make_config, "d_steps=1")
    backend = with_graphs(pair)
    train(pair, steps=3, checked_every=100, p_every=100)
    assert (backend.warmups, backend.captures, backend.replays) == (1, 1, 2)
    pair.train_step(torch.stack([REAL[i] for i in range(10)]), 3, check_finite=False)
    pair.train_step(torch.stack([REAL[i] for i in range(16)]), 4, check_finite=True)
    assert (backend.warmups, backend.captures, backend.replays) == (1, 1, 2)


def test_kinds_follow_the_branches_not_the_numbers(make_config):
    pair = make_pair(make_config, "d_steps=1")
    with_graphs(pair)
    train(pair, steps=6, checked_every=100, p_every=2)  # p moves, the kind stays
    assert len(pair.graphs.captured) == 1
    for p in (0.0, 1.0):  # no augmentation at all, or every operation on every image
        pair.reconfigure(dataclasses.replace(pair.settings, augment_p=p))
        for step in range(6, 9):
            pair.train_step(torch.stack([REAL[i] for i in range(16)]), step, check_finite=False)
    assert sorted(kind[1] for kind in pair.graphs.captured) == ["all", "none", "some"]


def test_graphs_are_dropped_when_what_they_bake_in_changes(make_config):
    pair = make_pair(make_config, "d_steps=1")
    with_graphs(pair)
    train(pair, steps=3, checked_every=100, p_every=100)
    pair.reconfigure(dataclasses.replace(pair.settings, augment_p=0.3))
    assert pair.graphs.captured  # a new p is a new number, not a new graph
    pair.reconfigure(dataclasses.replace(pair.settings, lr_d=1e-4))
    assert not pair.graphs.captured  # the learning rate is baked into Adam's captured step
    train(pair, steps=3, checked_every=100, p_every=100)
    assert pair.graphs.captured
    pair.load_state_dict(pair.state_dict())  # Adam's state tensors are new ones
    assert not pair.graphs.captured


def test_cuda_graphs_true_is_refused_where_a_graph_cannot_hold_the_step(make_config):
    with pytest.raises(DCGANError, match="cuda_graphs=true cannot be used here: CUDA graphs "
                                         "need a CUDA device"):
        make_pair(make_config, "cuda_graphs=true")
    assert make_pair(make_config, "cuda_graphs=auto").graphs is None  # auto: eager for now
    settings = make_pair(make_config).settings
    cuda = torch.device("cuda")
    assert eager_only_reason(settings, cuda, distributed=False) is None
    for change, reason in [({"precision": "fp16"}, "loss scaler"), ({"compile": True}, "compile"),
                           ({"loss": "wgan_gp"}, "double backward")]:
        why = eager_only_reason(dataclasses.replace(settings, **change), cuda, distributed=False)
        assert reason in why
    assert "torchrun" in eager_only_reason(settings, cuda, distributed=True)
    assert not graphs_wanted("false", settings, cuda, distributed=False)


def test_the_cli_refuses_cuda_graphs_on_a_cpu_in_one_line(cli, tmp_path):
    result = cli("dcgan-train", "device=cpu", "cuda_graphs=true", "dataset=fake",
                 "dataset.size=16", "model.ngf=8", "model.ndf=8", "batch_size=8", "epochs=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "cuda_graphs=true cannot be used here" in result.stderr
    assert "Traceback" not in result.stderr


def test_regularised_steps_replay_bit_for_bit(make_config):
    """LeCam's anchors move in place on the device, R1 steps are their own kind, bCR draws
    its augmentation inside the step: replayed, all of it trains as the eager step does."""
    regularised = ["reg.lecam.weight=0.3", "reg.r1.gamma=1", "reg.r1.interval=3",
                   "reg.bcr.real=1", "reg.bcr.fake=1"]
    eager = make_pair(make_config, *regularised)
    eager_metrics = train(eager, steps=12)
    replayed = make_pair(make_config, *regularised)
    backend = with_graphs(replayed)
    replayed_metrics = train(replayed, steps=12)
    assert backend.replays >= 4
    assert any(kind[-1] for kind in replayed.graphs.captured)  # an R1 step was captured
    for step, (a, b) in enumerate(zip(eager_metrics, replayed_metrics)):
        for key in a:
            assert torch.equal(a[key], b[key]), f"step {step + 1}: {key}"
    assert_identical(state(eager), state(replayed))
