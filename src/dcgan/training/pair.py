"""The adversarial pair: the two networks with their wrappers, optimisers, grad scalers, the
moving average of G, autocast, what D sees, and one training step (a D step, then a G step).

Built from `GANSettings` alone (no loader, no run directory), so tests and the benchmark make
one directly. `state_dict()` holds everything a checkpoint needs to continue the pair exactly.
A non-finite loss raises `NonFiniteLoss` before the update it would poison; the loop decides
what to save.

A conditional pair (its architecture conditioned on classes or attributes) is given the
`FakeLabels` its generated images are asked for; each step then takes the real images' label
values too, G makes fakes for drawn labels, and D judges every image with its label.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dcgan.errors import DCGANError
from dcgan.nets.augment import mirror
from dcgan.nets.batchnorm import RecalibratedCopy
from dcgan.nets.conditioning import FakeLabels, LabelSpace, with_labels
from dcgan.nets.ema import EMA
from dcgan.nets.losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    label_flip_mask,
)
from dcgan.nets.models import (
    Architecture,
    Generator,
    architecture_difference,
    build_models,
    freeze_first_blocks,
)
from dcgan.runtime.distributed import SINGLE, Distributed, any_rank
from dcgan.training.graphs import StepGraphs, graphs_wanted
from dcgan.training.regularisation import DRegularisers
from dcgan.training.settings import GANSettings
from dcgan.training.step import StepNumbers, StepPlan, what_d_sees

log = logging.getLogger(__name__)


class NonFiniteLoss(DCGANError):
    """A loss became NaN or Inf. The pair raises it before the update; the loop adds where it
    happened and the checkpoint hook where the state before it was saved."""

    exit_code = 3

    def __init__(self, which: str, value: float):
        super().__init__(f"the {which} became {value}")
        self.which, self.value = which, value
        self.step, self.epoch = 0, 0  # set by the loop
        self.saved_to: Optional[Path] = None  # set by the checkpoint hook

    def __str__(self) -> str:
        return (f"the {self.which} became {self.value} at step {self.step} (epoch {self.epoch}); "
                f"the state before it is in {self.saved_to} and the last good checkpoint is "
                "untouched; try a lower lr, or resume from the last checkpoint")


class GANPair:
    """Generator and discriminator, trained against each other one batch at a time."""

    def __init__(self, settings: GANSettings, device: torch.device,
                 layout: Distributed = SINGLE, fake_labels: Optional[FakeLabels] = None):
        self.settings, self.device, self.layout = settings, device, layout
        self.fake_labels = conditional_labels(settings.arch, fake_labels, device)
        # channels_last makes the convolutions ~40% faster on CPU and suits tensor cores
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        generator, discriminator = build_models(settings.arch)
        if layout.enabled and settings.sync_bn:
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        self.generator = generator.to(device, memory_format=self.memory_format)
        self.discriminator = discriminator.to(device, memory_format=self.memory_format)
        self.d_trainable = freeze_first_blocks(self.discriminator, settings.freeze_d)
        if settings.compile:
            keep_first_weight_contiguous(self.generator)
        self.g_forward, self.d_forward, self.d_frozen_forward = step_forwards(
            self.generator, self.discriminator, settings, layout, device)
        captured = graphs_wanted(settings.cuda_graphs, settings, device, layout.enabled)
        self.opt_g = make_adam(self.generator, settings, device, settings.lr_g, captured)
        self.opt_d = make_adam(self.discriminator, settings, device, settings.lr_d, captured)
        self.ema = make_ema(self.generator, settings)  # what samples, when on
        self.regularisers = DRegularisers(settings.reg, device, layout)  # reg.*: on D's loss
        self.recalibrated = RecalibratedCopy(  # with recalibrate_bn: what samples
            lambda: Generator(settings.arch).to(device, memory_format=self.memory_format),
            settings.arch.nz, self.fake_labels.vectors if self.fake_labels else None)
        self.autocast_dtype = autocast_dtype(settings.precision, device)
        # fp16 needs loss scaling; one scaler per network since their steps are separate
        use_scaler = self.autocast_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.graphs = StepGraphs(self) if captured else None  # the captured kinds of step

    @property
    def label_space(self) -> Optional[LabelSpace]:
        """What the networks are conditioned on; None for an unconditional pair."""
        return self.fake_labels.space if self.fake_labels is not None else None

    @property
    def sampling_generator(self) -> nn.Module:
        """What samples, evaluations and exports use: the moving average of G when EMA is on
        (else G), with recalibrate_bn a copy of it whose BatchNorm statistics are re-estimated
        for its weights (once per step at most, when first asked for)."""
        source = self.ema.module if self.ema is not None else self.generator
        return self.recalibrated.of(source) if self.settings.recalibrate_bn else source

    def reconfigure(self, settings: GANSettings) -> None:
        """Switch to settings that differ from the current ones only in what can change
        mid-run (learning rates, label targets, what D sees): e.g. the stabilisers the
        collapse guard turns on."""
        if settings.arch != self.settings.arch:
            raise ValueError("reconfigure cannot change the architecture")
        self.settings = settings
        self.set_learning_rates()
        if self.graphs is not None:
            self.graphs.settings_changed(settings)

    def set_learning_rates(self) -> None:
        for optimizer, lr in ((self.opt_g, self.settings.lr_g), (self.opt_d, self.settings.lr_d)):
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, self.settings.betas

    # -- one batch ---------------------------------------------------------------------------

    def train_step(self, real: torch.Tensor, step: int, check_finite: bool = True,
                   labels: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Training step `step` + 1: one D step on real (target 1) and G(z) (target 0), then
        one G step (target 1) on the same fake batch; with d_steps=k the G step comes on
        every k-th step only. A conditional pair needs the real images' `labels` (class ids
        or attribute rows).

        Returns detached scalar tensors; reading them is left to the caller so the step
        itself never waits for the device (unless `check_finite`). With CUDA graphs on, a
        step that needs no host read is replayed from a graph of its kind (dcgan.training.graphs).
        """
        real = real.to(self.device, non_blocking=True, memory_format=self.memory_format)
        real_y = real_label_vectors(self.fake_labels, labels, self.device)
        self.recalibrated.stale = True
        plan = StepPlan.of(self.settings, self.ema, step, real.shape[0] * self.layout.world_size)
        if self.graphs is not None and not check_finite:
            return self.graphs.run(real, plan, real_y)
        return self.run_step(real, plan, plan.numbers(), check_finite, real_y)

    def run_step(self, real: torch.Tensor, plan: "StepPlan", numbers: "StepNumbers",
                 check_finite: bool, real_y: Optional[torch.Tensor] = None
                 ) -> dict[str, torch.Tensor]:
        """The step `plan` describes, on `real` (on the device) and its label vectors
        `real_y` (conditional), with its per-step numbers as Python floats (eager) or device
        tensors (what a CUDA graph captures)."""
        if self.settings.mirror:
            real = mirror(real)
        fake_y = self.fake_labels.vectors(real.shape[0]) if self.fake_labels else None
        noise = torch.randn(real.shape[0], self.settings.arch.nz, 1, 1, device=self.device)
        with self.autocast(), torch.set_grad_enabled(plan.g_step):
            fake = self.g_forward(noise) if fake_y is None else self.g_forward(noise, fake_y)
        metrics = self.d_step(real, fake.detach(), plan, numbers, check_finite, (real_y, fake_y))
        if plan.g_step:
            metrics["loss_g"] = self.g_step(fake, numbers, check_finite, fake_y)
        if plan.ema != "off":  # "copy": the average starts from the live weights
            self.ema.fold(self.generator, numbers.ema_weight if plan.ema == "fold" else None)
        return metrics

    def d_step(self, real: torch.Tensor, fake: torch.Tensor, plan: "StepPlan",
               numbers: "StepNumbers", check_finite: bool,
               labels: tuple[Optional[torch.Tensor], Optional[torch.Tensor]] = (None, None)
               ) -> dict[str, torch.Tensor]:
        s = self.settings
        d_real, d_fake = (with_labels(self.d_forward, y) for y in labels)  # D(x [, y])
        real_seen, fake_seen = what_d_sees(real, s, numbers), what_d_sees(fake, s, numbers)
        with self.autocast():
            real_logits = d_real(real_seen)
            fake_logits = d_fake(fake_seen)
        # one coin per image, real ones first then fake ones: heads swaps its label
        flip = (label_flip_mask(2 * real.shape[0], s.label_flip, device=self.device)
                if s.label_flip else None)
        loss_d, _, _ = discriminator_loss(real_logits, fake_logits, kind=s.loss,
                                          real_label=s.real_label, flip=flip)  # float32
        if s.loss == "wgan_gp":
            # the interpolates are judged with the real images' labels
            loss_d = loss_d + gradient_penalty(with_labels(self.discriminator, labels[0]),
                                               real_seen, fake_seen, weight=s.gp_weight)
        loss_reg = (self.regularisers(s.reg, (d_real, d_fake),
                                      with_labels(self.discriminator, labels[0]), self.autocast,
                                      (real_seen, fake_seen), (real_logits, fake_logits), plan.r1)
                    if s.reg.on else None)
        loss_total = loss_d if loss_reg is None else loss_d + loss_reg
        if check_finite:
            refuse_non_finite(loss_total, self.layout, self.device, "discriminator loss (loss/d)")
        update(loss_total, self.opt_d, self.scaler_d)
        metrics = {
            "loss_d": loss_d.detach(),  # the adversarial loss alone (loss/d_reg holds the rest)
            "real_prob": torch.sigmoid(real_logits.detach().float()).mean(),
            "fake_prob": torch.sigmoid(fake_logits.detach().float()).mean(),
        }
        if s.track_real_sign:
            metrics["real_sign"] = torch.sign(real_logits.detach().float()).mean()
        if loss_reg is not None:
            metrics["loss_reg"] = loss_reg.detach()
        return metrics

    def g_step(self, fake: torch.Tensor, numbers: "StepNumbers", check_finite: bool,
               fake_y: Optional[torch.Tensor] = None) -> torch.Tensor:
        # D is frozen so no gradient is spent on its weights (and unfrozen whatever happens:
        # a run that recovers from a non-finite G loss trains D again)
        self.discriminator.requires_grad_(False)
        try:
            with self.autocast():
                fake_logits = with_labels(self.d_frozen_forward, fake_y)(
                    what_d_sees(fake, self.settings, numbers))
            loss_g = generator_loss(fake_logits, kind=self.settings.loss)
            if check_finite:
                refuse_non_finite(loss_g, self.layout, self.device, "generator loss (loss/g)")
            update(loss_g, self.opt_g, self.scaler_g)
        finally:
            for parameter in self.d_trainable:  # all but the blocks freeze_d fixes
                parameter.requires_grad_(True)
        return loss_g.detach()

    def autocast(self) -> torch.autocast:
        # no cast-weight cache under CUDA graphs (as torch.cuda.graphs asks; the same numbers)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None,
                              cache_enabled=self.graphs is None)

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "arch": self.settings.arch.as_dict(),
            **({"generator_ema": self.ema.state_dict()} if self.ema else {}),
            **self.regularisers.state_dict(),
            **({"labels": self.fake_labels.state_dict()} if self.fake_labels else {}),
            # the newest re-estimate of the sampling generator's BatchNorm statistics, as it is:
            # estimating is for the checkpoint hook to ask (epoch ends, not every step save)
            **({"sampling_bn": estimate} if self.settings.recalibrate_bn
               and (estimate := self.recalibrated.last_estimate()) is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Weights, optimiser moments and scalers from `state`; the learning rates stay this
        pair's settings (so lr=... overrides on resume take effect)."""
        load_weights_and_moments(self, state)
        self.set_learning_rates()
        self.recalibrated.stale = True
        if self.graphs is not None:
            self.graphs.after_load()
        if self.ema is not None:
            if "generator_ema" in state:
                self.ema.load_state_dict(state["generator_ema"])
            else:  # EMA turned on when resuming: start the average from the live weights
                self.ema.update(self.generator, 0)
        self.regularisers.load_state_dict(state)


def load_weights_and_moments(pair: GANPair, state: dict[str, Any]) -> None:
    """The networks, optimisers and scalers of `pair` from a checkpoint of the same networks
    (and labels); anything else is a DCGANError saying what differs."""
    arch = pair.settings.arch
    saved = Architecture(**state["arch"])
    if saved != arch:
        raise DCGANError(f"the checkpoint's networks ({saved.describe()}) do not match the "
                         f"config ({arch.describe()})")
    require_same_labels(pair.label_space, state)
    try:
        pair.generator.load_state_dict(state["generator"])
        pair.discriminator.load_state_dict(state["discriminator"])
        pair.opt_g.load_state_dict(state["opt_g"])
        pair.opt_d.load_state_dict(state["opt_d"])
        if pair.scaler_g.is_enabled() and state.get("scaler_g"):
            pair.scaler_g.load_state_dict(state["scaler_g"])
            pair.scaler_d.load_state_dict(state["scaler_d"])
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DCGANError(f"its weights do not fit {arch.describe()} ({first_line})") from error


def conditional_labels(arch: Architecture, fake_labels: Optional[FakeLabels],
                       device: torch.device) -> Optional[FakeLabels]:
    """The labels fakes draw, for a conditional architecture (None for an unconditional one);
    on `device`."""
    if not arch.conditional:
        return None
    if fake_labels is None:
        numbered = tuple(str(index) for index in range(arch.label_size))
        fake_labels = FakeLabels(LabelSpace(arch.condition, numbered))
    if fake_labels.space.size != arch.label_size or fake_labels.space.kind != arch.condition:
        raise DCGANError(f"the labels ({fake_labels.space.size} {fake_labels.space.kind}) do not "
                         f"fit the networks ({arch.label_size} {arch.condition})")
    return FakeLabels.from_state(fake_labels.state_dict(), device)


def real_label_vectors(fake_labels: Optional[FakeLabels], labels: Optional[torch.Tensor],
                       device: torch.device) -> Optional[torch.Tensor]:
    """The real images' label values as the vectors the networks read (None when
    unconditional); a conditional pair refuses a batch without labels."""
    if fake_labels is None:
        return None
    if labels is None:
        raise DCGANError("a conditional GAN trains on labelled images; build the data set "
                         "with labels (condition=class or condition=attributes)")
    return fake_labels.space.vectors(labels.to(device, non_blocking=True))


def require_same_labels(space: Optional[LabelSpace], state: dict[str, Any]) -> None:
    """A checkpoint's class names or attribute list must be those of this run's data."""
    saved = state.get("labels")
    if space is None or saved is None:
        return
    saved_space = LabelSpace.from_dict(saved)
    if saved_space != space:
        raise DCGANError(f"the checkpoint's {saved_space.kind} ({', '.join(saved_space.names)}) "
                         f"differ from the data's ({', '.join(space.names)})")


def refuse_non_finite(loss: torch.Tensor, layout: Distributed, device: torch.device,
                      which: str) -> None:
    """Raise NonFiniteLoss before the update; under torchrun every rank raises together
    (they agree first), so none waits in a collective the others never reach."""
    finite = bool(torch.isfinite(loss).item())
    if layout.enabled:
        finite = not any_rank(not finite, layout, device)
    if not finite:
        raise NonFiniteLoss(which, loss.item())


def initialise_from(pair: GANPair, state: dict[str, Any], source: str, optimisers: bool,
                    from_unconditional: bool = False) -> None:
    """Start `pair` from another run's weights (init_from): G, D and the moving average (or G
    itself where the checkpoint has none), with `optimisers` Adam's moments too.

    A conditional pair starts from an unconditional checkpoint only with `from_unconditional`:
    then every weight both have (the convolutions; BatchNorm's statistics) is copied, and what
    only the conditional networks have (label embeddings) starts fresh, as do Adam's moments."""
    saved = Architecture(**state["arch"])
    wanted = pair.settings.arch
    if from_unconditional and wanted.conditional and not saved.conditional:
        if replace(saved, condition=wanted.condition, label_size=wanted.label_size,
                   condition_style=wanted.condition_style) != wanted:
            raise DCGANError(f"init_from={source}: its networks differ from this run's beyond "
                             f"the conditioning: {architecture_difference(saved, wanted)}")
        fresh = copy_shared_weights(pair, state)
        log.info("init_from=%s (unconditional): copied the shared weights; %d tensors of the "
                 "conditional networks start fresh", source, fresh)
        return
    if saved != wanted:
        hint = ("; add init_from_unconditional=true to start a conditional run from an "
                "unconditional one" if wanted.conditional and not saved.conditional else "")
        raise DCGANError(f"init_from={source}: its networks differ from this run's: "
                         f"{architecture_difference(saved, wanted)}{hint}")
    require_same_labels(pair.label_space, state)
    pair.generator.load_state_dict(state["generator"])
    pair.discriminator.load_state_dict(state["discriminator"])
    if optimisers:
        pair.opt_g.load_state_dict(state["opt_g"])
        pair.opt_d.load_state_dict(state["opt_d"])
        pair.set_learning_rates()  # this run's rates, not the checkpoint's
    if pair.ema is not None:
        if "generator_ema" in state:
            pair.ema.load_state_dict(state["generator_ema"])
        else:
            pair.ema.copy_from(pair.generator)
    pair.recalibrated.stale = True
    if pair.graphs is not None:
        pair.graphs.after_load()


def copy_shared_weights(pair: GANPair, state: dict[str, Any]) -> int:
    """Copy into the conditional pair every tensor of an unconditional checkpoint whose name
    (a BatchNorm's statistics under its conditional layer's `norm.`) and shape match; the
    moving average starts from the copied G. Returns how many of the pair's tensors did not
    come from the checkpoint."""
    fresh = 0
    for module, saved in ((pair.generator, state["generator"]),
                          (pair.discriminator, state["discriminator"])):
        target = module.state_dict()
        renamed = {name: value for name, value in saved.items()}
        for name, value in saved.items():  # main.1.running_mean -> main.1.norm.running_mean
            head, _, leaf = name.rpartition(".")
            renamed.setdefault(f"{head}.norm.{leaf}", value)
        shared = {name: renamed[name] for name, value in target.items()
                  if name in renamed and renamed[name].shape == value.shape}
        fresh += len(target) - len(shared)
        module.load_state_dict(shared, strict=False)
    if pair.ema is not None:
        pair.ema.copy_from(pair.generator)
    pair.recalibrated.stale = True
    if pair.graphs is not None:
        pair.graphs.after_load()
    return fresh


def step_forwards(generator: nn.Module, discriminator: nn.Module, settings: GANSettings,
                  layout: Distributed, device: torch.device
                  ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """What the step calls for G, for D, and for D in the G step: the modules, compiled if
    asked, and DDP-wrapped under torchrun.

    The G step calls D's plain module: D is frozen there, and DistributedDataParallel
    would otherwise wait for D gradients that never come.
    """
    g_forward, d_forward = generator, discriminator
    if layout.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        g_forward = DistributedDataParallel(generator, device_ids=device_ids)
        d_forward = DistributedDataParallel(discriminator, device_ids=device_ids)
    compile_ = torch.compile if settings.compile else (lambda module: module)
    g_forward, d_forward = compile_(g_forward), compile_(d_forward)
    return g_forward, d_forward, compile_(discriminator) if layout.enabled else d_forward


def make_ema(generator: nn.Module, settings: GANSettings) -> Optional[EMA]:
    """The moving average of G the settings ask for, or None."""
    if not settings.ema_on:
        return None
    return EMA(generator, settings.ema_decay, settings.ema_start_step,
               settings.ema_half_life_images, settings.ema_rampup)


def update(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler) -> None:
    """Backward from `loss` (scaled for fp16) and one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def keep_first_weight_contiguous(generator: nn.Module) -> None:
    """For torch.compile on CUDA: with G's first ConvTranspose weight (its input is 1x1) in
    channels_last, the compiled backward fails (torch 2.11: inductor expects a channels_last
    weight gradient, cuDNN returns a contiguous one). That layer is under 1% of the FLOPs."""
    first = generator.main[0]
    first.weight.data = first.weight.data.contiguous()


def make_adam(module: nn.Module, settings: GANSettings, device: torch.device, lr: float,
              capturable: bool = False) -> torch.optim.Adam:
    """Adam with the paper's settings, in the fastest implementation the device has;
    `capturable` for CUDA graphs (its step count on the device; fused Adam runs the same
    kernel either way)."""
    impl = settings.adam
    if impl == "auto":
        impl = "fused" if device.type in ("cpu", "cuda") else "foreach"
    options = {"fused": {"fused": True}, "foreach": {"foreach": True},
               "for_loop": {"foreach": False, "fused": False}}[impl]
    return torch.optim.Adam(module.parameters(), lr=lr, betas=settings.betas,
                            capturable=capturable, **options)


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `precision`, or None for plain float32.

    auto is bf16 on CUDA GPUs that support it and fp32 elsewhere: bf16 autocast on a CPU
    without AVX-512 BF16 is many times slower than fp32.
    """
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if precision == "fp16" and device.type == "cpu":
        raise DCGANError("precision=fp16 is for GPUs; use fp32 (or bf16) on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

