"""CUDA graphs of the training step (cuda_graphs=true): at the paper's batch of 128 a DCGAN
step on a GPU is a few hundred small kernels, and launching them costs more than running
them. A CUDA graph records the launches of one whole step (G forward, D step, G step, both
Adam updates, the moving average) once and replays them with one call.

A graph bakes in the step's branches and shapes, so there is one per kind of step
(`StepPlan.kind`: G steps or not, augmentation none / some / all, instance noise, what the
moving average does), for the first batch shape seen. What changes from step to step (the
augmentation chance adaptive augmentation moves, the annealed noise std, the EMA weight of
a ramp-up) is read from device tensors filled before each replay; the images (and, for a
conditional pair, their label vectors) go in through static buffers, and the labels drawn
for fakes are drawn inside the graph, from the same generator as the eager step. Each kind
runs `warmup` eager steps on a side stream first (cuDNN picks its algorithms there, as
capture needs), is captured, and is replayed from then on: the capture itself records
without running, so the step it was made for is the first replay.

Eager steps remain for: a batch of another shape (one short of unreadable images), a step whose
losses are checked on the host (check_finite), and anything before a kind is captured. A
change of what a graph bakes in (learning rates, label targets, the loss; not p or the noise)
and a restored checkpoint (Adam's state tensors are new ones) drop the graphs; they are
captured again. The captured step draws its random numbers from the same generator at the
same offsets as the eager one, so the two train alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Protocol

import torch

from dcgan.errors import DCGANError
from dcgan.training.settings import GANSettings
from dcgan.training.step import StepNumbers, StepPlan


class SteppedPair(Protocol):
    """What the graphs use of the GAN pair (training/pair.py): its device and settings, its
    optimisers, and the step body that both eager and captured steps run."""

    device: torch.device
    settings: GANSettings
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    def run_step(self, real: torch.Tensor, plan: StepPlan, numbers: StepNumbers,
                 check_finite: bool, real_y: Optional[torch.Tensor] = None
                 ) -> dict[str, torch.Tensor]: ...


def graphs_wanted(choice: str, settings: "GANSettings", device: torch.device,
                  distributed: bool) -> bool:
    """Whether the pair's steps are captured: `choice` is cuda_graphs (auto | true | false).

    auto stays eager: the capture has no GPU measurement yet (docs/performance.md). true
    refuses, with the reason, what a graph cannot hold.
    """
    if choice in ("false", "auto"):
        return False
    why_not = eager_only_reason(settings, device, distributed)
    if why_not:
        raise DCGANError(f"cuda_graphs=true cannot be used here: {why_not}; "
                         "use cuda_graphs=false")
    return True


def eager_only_reason(settings: "GANSettings", device: torch.device, distributed: bool
                      ) -> Optional[str]:
    """Why this pair's step cannot be captured, or None."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (the run is on {device.type})"
    if settings.precision == "fp16":
        return "precision=fp16's loss scaler reads the gradients on the host every step"
    if distributed:
        return "under torchrun the gradients are all-reduced outside the step"
    if settings.compile:
        return "compile=true and CUDA graphs are not combined (torch.compile has its own)"
    if settings.loss == "wgan_gp":
        return "the gradient penalty's double backward is not captured"
    return None


def baked_settings(settings: "GANSettings") -> "GANSettings":
    """The part of the settings a graph bakes in: all but the per-step numbers."""
    return replace(settings, augment_p=0.0, noise=replace(settings.noise, start_step=0))


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Adam as a graph can hold it, also after loading a state saved without graphs (which
    brings its param groups' flags): capturable, its step counts on the parameters' device."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        for parameter in group["params"]:
            step = optimizer.state.get(parameter, {}).get("step")
            if isinstance(step, torch.Tensor) and step.device != parameter.device:
                optimizer.state[parameter]["step"] = step.to(parameter.device, torch.float32)


class CudaGraphBackend:
    """Capture and warm-up on a CUDA device (see torch.cuda.graphs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool for all kinds
        self.side = torch.cuda.Stream(device)

    def warmup(self, body: Callable[[], dict]) -> dict:
        """One eager step on the side stream, ordered after and before the main stream."""
        main = torch.cuda.current_stream(self.device)
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            metrics = body()
        main.wait_stream(self.side)
        return metrics

    def capture(self, body: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """Record `body` (nothing runs); returns what replays it and gives its output."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = body()

        def replay() -> torch.Tensor:
            graph.replay()
            return output
        return replay


@dataclass
class CapturedStep:
    """One kind of step as a graph: its static inputs, its replay, and its outputs' names."""

    replay: Callable[[], torch.Tensor]  # replays the step; returns its packed metrics
    real: torch.Tensor  # the static batch the graph reads
    real_y: Optional[torch.Tensor]  # its static label vectors (a conditional pair), or None
    numbers: torch.Tensor  # [augment_p, noise_std, ema_weight], read by the graph
    keys: list[str]  # the metric names, in the packed order
    filled: Optional[tuple[float, float, float]] = None  # what `numbers` holds now


class StepGraphs:
    """The captured kinds of one GAN pair's step, and the rule for when to replay them."""

    def __init__(self, pair: SteppedPair, backend=None, warmup: int = 3):
        self.pair, self.warmup_steps = pair, warmup
        self.backend = backend or CudaGraphBackend(pair.device)
        self.captured: dict[tuple, CapturedStep] = {}
        self.eager_steps: dict[tuple, int] = {}  # warm-up steps run so far, per kind
        self.shape: Optional[torch.Size] = None  # the batch shape graphs are made for
        self.baked = baked_settings(pair.settings)

    def run(self, real: torch.Tensor, plan: "StepPlan", real_y: Optional[torch.Tensor] = None
            ) -> dict[str, torch.Tensor]:
        """Step `plan` on `real` (with label vectors `real_y`, conditional): replayed when its
        kind is captured, else eager."""
        self.shape = self.shape or real.shape
        if real.shape != self.shape:  # e.g. a batch short of unreadable images
            return self.eager(real, plan, real_y)
        captured = self.captured.get(plan.kind)
        if captured is None:
            warmed = self.eager_steps.get(plan.kind, 0)
            if warmed < self.warmup_steps:
                self.eager_steps[plan.kind] = warmed + 1
                return self.backend.warmup(lambda: self.eager(real, plan, real_y))
            captured = self.captured[plan.kind] = self.capture(real, plan, real_y)
        return self.replay(captured, real, plan, real_y)

    def eager(self, real: torch.Tensor, plan: "StepPlan", real_y: Optional[torch.Tensor] = None
              ) -> dict[str, torch.Tensor]:
        return self.pair.run_step(real, plan, plan.numbers(), check_finite=False, real_y=real_y)

    def capture(self, real: torch.Tensor, plan: "StepPlan",
                real_y: Optional[torch.Tensor] = None) -> CapturedStep:
        static_real = torch.empty_like(real)
        static_y = torch.empty_like(real_y) if real_y is not None else None
        numbers = torch.zeros(3, device=real.device)
        # the numbers this kind reads on the device; the others are the same on every step
        # of the kind (p 0 or 1, no noise, no EMA weight) and stay Python floats
        augment, noise, ema = plan.kind[1:4]
        step_numbers = replace(plan.numbers(),
                               augment_p=numbers[0] if augment == "some" else plan.augment_p,
                               noise_std=numbers[1] if noise else 0.0,
                               ema_weight=numbers[2] if ema == "fold" else 0.0)
        keys: list[str] = []

        def body() -> torch.Tensor:
            metrics = self.pair.run_step(static_real, plan, step_numbers, check_finite=False,
                                         real_y=static_y)
            keys[:] = list(metrics)
            return torch.stack([metrics[key].float() for key in metrics])
        replay = self.backend.capture(body)
        return CapturedStep(replay=replay, real=static_real, real_y=static_y, numbers=numbers,
                            keys=keys)

    def replay(self, captured: CapturedStep, real: torch.Tensor, plan: "StepPlan",
               real_y: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        captured.real.copy_(real)
        if captured.real_y is not None:
            captured.real_y.copy_(real_y)
        wanted = (plan.augment_p, plan.noise_std, plan.ema_weight)
        if captured.filled != wanted:  # a fill is a launch: only when the numbers change
            for index, value in enumerate(wanted):
                captured.numbers[index].fill_(value)
            captured.filled = wanted
        packed = captured.replay().clone()  # the next replay overwrites the graph's output
        return dict(zip(captured.keys, packed.unbind()))

    def settings_changed(self, settings: "GANSettings") -> None:
        """Drop the graphs when something they bake in changed."""
        baked = baked_settings(settings)
        if baked != self.baked:
            self.baked = baked
            self.clear()

    def after_load(self) -> None:
        """After the pair loaded a state: Adam's state tensors are new ones (the graphs read
        the old), and its param groups carry the saved run's flags (capturable again)."""
        make_capturable(self.pair.opt_g)
        make_capturable(self.pair.opt_d)
        self.clear()

    def clear(self) -> None:
        """Forget every graph (they are captured again, after their warm-up)."""
        self.captured.clear()
        self.eager_steps.clear()
