"""The config schema (typed dataclasses registered with Hydra), every cross-field check, and
the typed settings the rest of the package runs on.

This is the only module that knows the shape of the config. Hydra refuses unknown keys and
wrong types while composing; `validate` refuses values that type-check but make no sense;
`resolve` turns the validated config into frozen settings (`RunSettings`) once, at the edge,
so nothing downstream reads config strings or changes the config.

The schema, the checks of a command line and the composition need no torch: the modules that
define the settings types (and the data sets, the networks' options) load it, so they are
imported inside the functions that validate and resolve, and `dcgan-train --help` answers
without loading torch.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, get_origin, get_type_hints

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, OverrideType
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dcgan.errors import DCGANError

if TYPE_CHECKING:  # for annotations only; each module imports torch
    from dcgan.nets.augment import AdaSettings
    from dcgan.nets.conditioning import LabelSpace
    from dcgan.nets.models import Architecture
    from dcgan.nets.regularisers import RegSettings
    from dcgan.training.hooks.collapse_guard import GuardSettings
    from dcgan.training.hooks.lr_tail import LRTailSettings
    from dcgan.training.hooks.nonfinite import NonFiniteSettings
    from dcgan.training.hooks.saving import CheckpointSettings
    from dcgan.training.hooks.scoring import EvaluationSettings
    from dcgan.training.settings import GANSettings, LoopSettings

log = logging.getLogger(__name__)

SUPPORTED_IMAGE_SIZES = (32, 64, 128)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class BadImagePolicy(str, Enum):
    skip = "skip"
    error = "error"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA GPUs that support it, fp32 elsewhere
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"  # with a GradScaler per network


class AdamImpl(str, Enum):
    auto = "auto"  # fused where torch has it for the device (CPU, CUDA), else foreach
    fused = "fused"
    foreach = "foreach"
    for_loop = "for_loop"  # the textbook single-tensor implementation


class LossKind(str, Enum):
    bce = "bce"  # the paper's binary cross-entropy (non-saturating G loss)
    hinge = "hinge"
    lsgan = "lsgan"  # least squares
    wgan_gp = "wgan_gp"  # Wasserstein with gradient penalty; D without BatchNorm


class LRSchedule(str, Enum):
    constant = "constant"  # the learning rates as set, throughout
    linear_tail = "linear_tail"  # linearly down to 0 over the last lr_tail_fraction of the run


class CollapsePolicy(str, Enum):
    off = "off"  # do not watch
    warn = "warn"  # log a warning (console and TensorBoard) and go on
    stop = "stop"  # checkpoint and exit with a message
    rollback = "rollback"  # reload the last healthy checkpoint, turn on the stabilisers, go on


class NonFinitePolicy(str, Enum):
    stop = "stop"  # save the state before the bad update and exit (code 3)
    rollback = "rollback"  # reload the newest checkpoint before it, lower both rates, go on


# What eval.select may name; every one of them is better when lower.
SELECTABLE_METRICS = ("swd/mean", "fid", "kid")


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: Optional[str] = None  # folder of the data; relative paths are from the working dir
    split: str = "all"
    limit: Optional[int] = None  # use only the first N images; null = all
    image_size: int = 64
    channels: int = 3  # fixed by the data for digits/mnist/celeba/cifar10; chosen for folder/fake
    download: bool = False  # mnist only: fetch the IDX files when they are missing
    size: int = 2048  # fake only: how many random images
    on_bad_image: BadImagePolicy = BadImagePolicy.skip  # folder/celeba/cifar10: an unreadable file
    cache: bool = False  # image files (folder/celeba/cifar10): decode once into a uint8 array file
    cache_dir: str = "data/cache"  # where decoded-image caches live
    mirror: bool = False  # flip each real image left-right with probability 1/2
    attributes: Optional[List[str]] = None  # celeba, condition=attributes: these; null = all 40


@dataclass
class ConditionConfig:
    kind: str = "none"  # none | class | attributes: what G and D are conditioned on
    style: str = "concat"  # concat (y joined to G's and D's inputs) | projection (cBN + projection)
    sample: str = "uniform"  # classes asked of G while training: uniform | data (data's shares)


@dataclass
class ModelConfig:
    name: str = "dcgan"
    nz: int = 100  # length of the latent vector z
    ngf: int = 64  # generator feature maps in the last block
    ndf: int = 64  # discriminator feature maps in the first block
    sync_bn: bool = False  # torchrun on GPUs: BatchNorm statistics over all processes
    spectral_norm: bool = False  # spectral normalisation on every convolution of D
    d_batchnorm: Optional[bool] = None  # BatchNorm in D's middle blocks; null = off for wgan_gp


@dataclass
class InstanceNoiseConfig:
    std: float = 0.0  # Gaussian noise on everything D sees, in [-1, 1] image units; 0 = off
    anneal_epochs: Optional[float] = None  # linearly to zero over this many epochs; null = run


@dataclass
class EMAConfig:
    decay: float = 0.0  # moving average of G's weights for samples and evaluation; 0 = off
    start_step: int = 0  # copy the live weights until this step
    half_life_images: Optional[float] = None  # instead of decay: the average's half-life in images
    rampup: Optional[float] = 0.05  # with half_life_images: at most this x the images seen so far
    recalibrate_bn: bool = True  # re-estimate the sampling generator's BatchNorm statistics


@dataclass
class AugmentConfig:
    ops: List[str] = field(default_factory=list)  # DiffAugment on all D sees, e.g. [color,cutout]
    p: Any = 1.0  # chance each image gets each operation: a number in [0, 1], or ada
    target: float = 0.6  # ada: the value E[sign(D(real))] is steered to
    interval: int = 4  # ada: steps between adjustments of p
    speed_images: int = 500_000  # ada: images over which p can move from 0 to 1


@dataclass
class LeCamConfig:
    weight: float = 0.0  # LeCam regulariser's weight (Tseng et al., 2021); 0 = off
    decay: float = 0.99  # of the moving averages of D's outputs it anchors to


@dataclass
class R1Config:
    gamma: float = 0.0  # R1 penalty on real images (Mescheder et al., 2018); 0 = off
    interval: int = 16  # lazy: every N steps, scaled by N


@dataclass
class BCRConfig:
    real: float = 0.0  # balanced consistency (Zhao et al., 2020): weight for real images
    fake: float = 0.0  # ... and for generated images; both 0 = off
    ops: List[str] = field(default_factory=lambda: ["translation", "cutout"])  # the T in D(T(x))


@dataclass
class RegConfig:
    """Regularisers of D made for small data sets, added to D's loss; all off by default."""

    lecam: LeCamConfig = field(default_factory=LeCamConfig)
    r1: R1Config = field(default_factory=R1Config)
    bcr: BCRConfig = field(default_factory=BCRConfig)


@dataclass
class EvalConfig:
    every: int = 1  # evaluate every N epochs (and after the last); 0 = never
    n_samples: int = 512  # generated images, and real images in the fixed real subset
    select: str = "swd/mean"  # the metric that picks checkpoints/best.pt (lower is better)
    fid: bool = False  # also FID/KID (needs the Inception weights file, docs/quality.md)
    inception_weights: Optional[str] = None  # path to pt_inception-2015-12-05-6726825d.pth
    seed: int = 1234  # fixes the real subset, the evaluation noise and the SWD projections


@dataclass
class RollbackConfig:
    """What `collapse.policy=rollback` turns on after it reloads the last healthy checkpoint."""

    lr_d_factor: float = 0.5  # D's learning rate is multiplied by this
    instance_noise: float = 0.1  # instance noise std (annealed over the rest of the run)
    real_label: float = 0.9  # one-sided label smoothing (bce only)
    max_rollbacks: int = 3  # after this many, the policy acts as `stop`


@dataclass
class CollapseConfig:
    policy: CollapsePolicy = CollapsePolicy.warn
    d_loss_floor: float = 0.05  # D loss below this ...
    g_loss_ceiling: float = 8.0  # ... while G's loss is above this (or climbing) ...
    patience: int = 5  # ... for this many consecutive log windows
    real_prob_high: float = 0.98  # D(x) above this while D(G(z)) below fake_prob_low
    fake_prob_low: float = 0.02
    diversity_floor: float = 0.3  # diversity ratio at an evaluation below this
    rollback: RollbackConfig = field(default_factory=RollbackConfig)


@dataclass
class NonFiniteConfig:
    """What a NaN or Inf loss does."""

    policy: NonFinitePolicy = NonFinitePolicy.stop
    lr_factor: float = 0.5  # rollback: both learning rates are multiplied by this each time
    max_retries: int = 3  # rollback: after this many, a non-finite loss stops the run


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: Device = Device.auto
    num_workers: Optional[int] = None  # DataLoader workers; null = chosen for the data set
    data_on_device: Any = "auto"  # decoded images kept in device memory: auto | true | false
    data_on_device_fraction: float = 0.25  # auto: when they fill at most this of the device
    log_every: int = 50  # steps between TensorBoard scalars and progress-bar updates
    resume: Optional[str] = None  # a checkpoint file, a run directory, or "auto"
    init_from: Optional[str] = None  # a new run starting from this checkpoint's weights
    init_from_optim: bool = False  # init_from: also Adam's moments
    init_from_unconditional: bool = False  # init_from: a conditional run from an unconditional one
    freeze_d: int = 0  # D's first N convolution blocks stay fixed (Mo et al., 2020)
    ckpt_every_steps: int = 0  # extra step checkpoints every N steps; 0 = only per epoch
    keep_last: int = 3  # numbered checkpoints of each kind to keep; 0 = keep all
    report: bool = True  # write report.html when the run ends (dcgan-report RUN_DIR: any time)
    # speed: each default is the fast choice measured on its device (docs/performance.md)
    precision: Precision = Precision.auto
    channels_last: bool = True  # NHWC convolutions: faster on CPUs and tensor cores
    compile: bool = False  # torch.compile both networks (pays on GPUs for long runs)
    cuda_graphs: Any = "auto"  # replay each kind of training step as a CUDA graph: auto | true | false
    adam: AdamImpl = AdamImpl.auto
    cpu_threads: Any = "auto"  # CPU threads: auto (the usable CPUs left idle) | N | null (torch)
    ddp_check_every: int = 0  # torchrun: every N steps verify all ranks hold identical weights
    # the objective and the stabilisers (docs/stable-training.md); each off by default
    loss: LossKind = LossKind.bce
    lr_g: Optional[float] = None  # G's learning rate; null = lr
    lr_d: Optional[float] = None  # D's learning rate; null = lr (two time-scale: lr_d > lr_g)
    d_steps: int = 1  # D steps (batches) per G step
    real_label: float = 1.0  # target for real images; 0.9 = one-sided label smoothing
    label_flip: float = 0.0  # probability of swapping a real/fake label in D's loss (bce)
    gp_weight: float = 10.0  # wgan_gp: weight of the gradient penalty
    reg: RegConfig = field(default_factory=RegConfig)
    lr_schedule: LRSchedule = LRSchedule.constant
    lr_tail_fraction: float = 0.2  # linear_tail: the last fraction of the steps that decays
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    instance_noise: InstanceNoiseConfig = field(default_factory=InstanceNoiseConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    nonfinite: NonFiniteConfig = field(default_factory=NonFiniteConfig)
    logger: List[str] = field(default_factory=lambda: ["tensorboard"])  # + csv, wandb


def register_configs() -> None:
    """Make the schema known to Hydra as `train_schema` (first entry of train.yaml's defaults)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def validate(cfg: DictConfig) -> None:
    """Refuse values that type-check but cannot work. Raises DCGANError with one clear line."""
    _require(cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    _require(cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}")
    _require(cfg.lr > 0, f"lr must be positive, got {cfg.lr}")
    for name in ("beta1", "beta2"):
        value = cfg[name]
        _require(0 <= value < 1, f"{name} must be in [0, 1), got {value}")
    _require(cfg.log_every >= 1, f"log_every must be at least 1, got {cfg.log_every}")
    _require(
        cfg.num_workers is None or cfg.num_workers >= 0,
        f"num_workers must be 0 or more (or null for automatic), got {cfg.num_workers}",
    )
    _require(cfg.cuda_graphs in ("auto", True, False),
             f"cuda_graphs must be auto, true or false, got {cfg.cuda_graphs}")
    _require(cfg.data_on_device in ("auto", True, False),
             f"data_on_device must be auto, true or false, got {cfg.data_on_device}")
    _require(0 < cfg.data_on_device_fraction <= 1, "data_on_device_fraction must be in (0, 1], "
             f"got {cfg.data_on_device_fraction}")
    _require(cfg.ckpt_every_steps >= 0,
             f"ckpt_every_steps must be 0 (only per epoch) or more, got {cfg.ckpt_every_steps}")
    _require(cfg.keep_last >= 0, f"keep_last must be 0 (keep all) or more, got {cfg.keep_last}")
    _require(cfg.ddp_check_every >= 0, f"ddp_check_every must be 0 or more, got {cfg.ddp_check_every}")
    _require(cfg.cpu_threads in ("auto", None) or (
        isinstance(cfg.cpu_threads, int) and not isinstance(cfg.cpu_threads, bool)
        and cfg.cpu_threads >= 1),
             f"cpu_threads must be auto, a number of threads of at least 1, or null, got "
             f"{cfg.cpu_threads}")
    for name in ("nz", "ngf", "ndf"):
        value = cfg.model[name]
        _require(value >= 1, f"model.{name} must be at least 1, got {value}")
    _validate_dataset(cfg.dataset)
    _validate_condition(cfg.condition, cfg.dataset)
    _validate_stabilisers(cfg)
    _validate_eval(cfg.eval)
    _validate_collapse(cfg.collapse)
    _validate_loggers(cfg.logger)
    nf = cfg.nonfinite
    _require(0 < nf.lr_factor < 1, f"nonfinite.lr_factor must be in (0, 1), got {nf.lr_factor}")
    _require(nf.max_retries >= 0, f"nonfinite.max_retries must be 0 or more, got {nf.max_retries}")


def _validate_stabilisers(cfg: DictConfig) -> None:
    from dcgan.nets.models import Architecture

    for name in ("lr_g", "lr_d"):
        _require(cfg[name] is None or cfg[name] > 0, f"{name} must be positive (or null), got {cfg[name]}")
    _require(cfg.d_steps >= 1, f"d_steps must be at least 1, got {cfg.d_steps}")
    _require(0 < cfg.real_label <= 1, f"real_label must be in (0, 1], got {cfg.real_label}")
    _require(0 <= cfg.label_flip < 0.5, f"label_flip must be in [0, 0.5), got {cfg.label_flip}")
    loss = str(cfg.loss.value)
    if loss != "bce":
        _require(cfg.label_flip == 0, f"label_flip is for loss=bce, not loss={loss}")
    if loss not in ("bce", "lsgan"):
        _require(cfg.real_label == 1.0, f"real_label is for loss=bce or lsgan, not loss={loss}")
    _require(cfg.gp_weight >= 0, f"gp_weight must be 0 or more, got {cfg.gp_weight}")
    if loss == "wgan_gp":
        _require(cfg.model.d_batchnorm is not True, "loss=wgan_gp needs a discriminator without "
                 "BatchNorm (the penalty is per image); drop model.d_batchnorm=true")
    _validate_augment(cfg.augment)
    _validate_reg(cfg.reg, loss)
    _require(0 < cfg.lr_tail_fraction <= 1,
             f"lr_tail_fraction must be in (0, 1], got {cfg.lr_tail_fraction}")
    # D's convolutions but the last one
    blocks = Architecture(image_size=cfg.dataset.image_size).middle_blocks + 1
    _require(0 <= cfg.freeze_d <= blocks, f"freeze_d must be 0..{blocks} at "
             f"{cfg.dataset.image_size}x{cfg.dataset.image_size} (the last convolution always "
             f"trains), got {cfg.freeze_d}")
    noise = cfg.instance_noise
    _require(noise.std >= 0, f"instance_noise.std must be 0 or more, got {noise.std}")
    _require(noise.anneal_epochs is None or noise.anneal_epochs > 0,
             f"instance_noise.anneal_epochs must be positive (or null), got {noise.anneal_epochs}")
    _validate_ema(cfg.ema)


def _validate_augment(augment: DictConfig) -> None:
    from dcgan.nets.augment import AUGMENT_POLICIES

    for part in augment.ops:
        _require(part in AUGMENT_POLICIES, f"augment: unknown policy {part!r}; choose from "
                 f"{', '.join(AUGMENT_POLICIES)}, e.g. augment=[color,translation,cutout]")
    _require(augment_p(augment) is not None,
             f"augment.p must be a number in [0, 1] or ada, got {augment.p!r}")
    if augment.p == "ada":
        _require(bool(augment.ops), "augment.p=ada adapts how often the operations are applied: "
                 "name them too, e.g. augment=[color,translation,cutout]")
    _require(-1 < augment.target < 1, f"augment.target must be in (-1, 1), got {augment.target}")
    _require(augment.interval >= 1, f"augment.interval must be 1 or more, got {augment.interval}")
    _require(augment.speed_images >= 1,
             f"augment.speed_images must be 1 or more, got {augment.speed_images}")


def _validate_reg(reg: DictConfig, loss: str) -> None:
    from dcgan.nets.augment import AUGMENT_POLICIES

    _require(reg.lecam.weight >= 0, f"reg.lecam.weight must be 0 or more, got {reg.lecam.weight}")
    _require(0 <= reg.lecam.decay < 1, f"reg.lecam.decay must be in [0, 1), got {reg.lecam.decay}")
    _require(reg.r1.gamma >= 0, f"reg.r1.gamma must be 0 or more, got {reg.r1.gamma}")
    _require(reg.r1.interval >= 1, f"reg.r1.interval must be at least 1, got {reg.r1.interval}")
    if loss == "wgan_gp":
        _require(reg.r1.gamma == 0, "reg.r1 is a gradient penalty and loss=wgan_gp has its own "
                 "(gp_weight); drop reg.r1.gamma or choose another loss")
    for name in ("real", "fake"):
        _require(reg.bcr[name] >= 0, f"reg.bcr.{name} must be 0 or more, got {reg.bcr[name]}")
    for op in reg.bcr.ops:
        _require(op in AUGMENT_POLICIES, f"reg.bcr.ops: unknown operation {op!r}; choose from "
                 f"{', '.join(AUGMENT_POLICIES)}")
    if reg.bcr.real > 0 or reg.bcr.fake > 0:
        _require(len(reg.bcr.ops) > 0, "reg.bcr needs at least one operation in reg.bcr.ops")


def reg_settings(reg: DictConfig) -> RegSettings:
    from dcgan.nets.regularisers import BCRSettings, LeCamSettings, R1Settings, RegSettings

    return RegSettings(
        lecam=LeCamSettings(weight=reg.lecam.weight, decay=reg.lecam.decay),
        r1=R1Settings(gamma=reg.r1.gamma, interval=reg.r1.interval),
        bcr=BCRSettings(real=reg.bcr.real, fake=reg.bcr.fake, ops=tuple(reg.bcr.ops)))


def augment_p(augment: DictConfig) -> Optional[float]:
    """The starting augmentation probability (0 for ada, which raises it as D overfits), or
    None when augment.p is neither a number in [0, 1] nor ada."""
    if augment.p == "ada":
        return 0.0
    try:
        value = float(augment.p)
    except (TypeError, ValueError):
        return None
    return value if 0.0 <= value <= 1.0 else None


def _validate_ema(ema: DictConfig) -> None:
    _require(0 <= ema.decay < 1, f"ema.decay must be in [0, 1), got {ema.decay}")
    _require(ema.start_step >= 0, f"ema.start_step must be 0 or more, got {ema.start_step}")
    if ema.half_life_images is not None:
        _require(ema.half_life_images > 0,
                 f"ema.half_life_images must be positive, got {ema.half_life_images}")
        _require(ema.decay == 0, f"set ema.decay or ema.half_life_images, not both (ema.decay is "
                 f"{ema.decay}, perhaps from an experiment: add ema.decay=0 to use the horizon)")
    _require(ema.rampup is None or 0 < ema.rampup <= 1,
             f"ema.rampup must be in (0, 1] (or null), got {ema.rampup}")


LOGGERS = ("tensorboard", "csv", "wandb")
OPTIONAL_LOGGER_PACKAGES = {"wandb": 'pip install "dcgan[wandb]"'}


def _validate_loggers(names: List[str]) -> None:
    for name in names:
        _require(name in LOGGERS, f"logger: unknown logger {name!r}; choose from "
                 f"{', '.join(LOGGERS)}, e.g. logger=[tensorboard,csv]")
        hint = OPTIONAL_LOGGER_PACKAGES.get(name)
        _require(hint is None or importlib.util.find_spec(name) is not None,
                 f"logger={name} needs the {name} package, which is not installed: {hint}")


def _validate_eval(ev: DictConfig) -> None:
    _require(ev.every >= 0, f"eval.every must be 0 (never) or more, got {ev.every}")
    _require(ev.n_samples >= 16, f"eval.n_samples must be at least 16, got {ev.n_samples}")
    _require(ev.select in SELECTABLE_METRICS, f"eval.select={ev.select!r} is not a metric; "
             f"choose one of {', '.join(SELECTABLE_METRICS)}")
    _require(ev.select == "swd/mean" or ev.fid,
             f"eval.select={ev.select} needs eval.fid=true (and the Inception weights)")


def _validate_collapse(co: DictConfig) -> None:
    _require(co.patience >= 1, f"collapse.patience must be at least 1, got {co.patience}")
    for name in ("real_prob_high", "fake_prob_low", "diversity_floor"):
        _require(0 <= co[name] <= 1, f"collapse.{name} must be in [0, 1], got {co[name]}")
    rb = co.rollback
    _require(0 < rb.lr_d_factor <= 1, f"collapse.rollback.lr_d_factor must be in (0, 1], got {rb.lr_d_factor}")
    _require(rb.instance_noise >= 0, f"collapse.rollback.instance_noise must be 0 or more, got {rb.instance_noise}")
    _require(0 < rb.real_label <= 1, f"collapse.rollback.real_label must be in (0, 1], got {rb.real_label}")
    _require(rb.max_rollbacks >= 0, f"collapse.rollback.max_rollbacks must be 0 or more, got {rb.max_rollbacks}")


def _validate_dataset(ds: DictConfig) -> None:
    from dcgan.data.datasets import DATASETS

    _require(ds.name in DATASETS, f"unknown dataset.name {ds.name!r}; "
             f"choose one of {', '.join(DATASETS)}")
    kind = DATASETS[ds.name]
    _require(
        ds.image_size in SUPPORTED_IMAGE_SIZES,
        f"dataset.image_size={ds.image_size} is not supported; "
        f"choose one of {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}",
    )
    splits = kind.splits
    _require(ds.split in splits, f"dataset.split={ds.split!r} is not a split of {ds.name}; "
             f"choose one of {', '.join(splits)}")
    _require(ds.limit is None or ds.limit >= 1,
             f"dataset.limit must be at least 1 (or null for all), got {ds.limit}")
    fixed = kind.channels
    if fixed is not None:
        _require(ds.channels == fixed, f"dataset.channels={ds.channels} is not possible for "
                 f"{ds.name}: its images have {fixed} channel(s)")
    else:
        _require(ds.channels in (1, 3), f"dataset.channels must be 1 or 3, got {ds.channels}")
    _require(ds.size >= 1, f"dataset.size must be at least 1, got {ds.size}")
    _require(not kind.needs_root or bool(ds.root), f"dataset.root must be set for {ds.name}")


def _validate_condition(co: DictConfig, ds: DictConfig) -> None:
    from dcgan.data.datasets import DATASETS, label_request
    from dcgan.nets.conditioning import CONDITION_KINDS, CONDITION_STYLES, FAKE_LABEL_DRAWS

    for name, options in (("kind", CONDITION_KINDS), ("style", CONDITION_STYLES),
                          ("sample", FAKE_LABEL_DRAWS)):
        _require(co[name] in options, f"condition.{name}={co[name]} is not an option; choose "
                 f"one of {', '.join(options)}")
    attributes = list(ds.attributes) if ds.attributes is not None else None
    if attributes is not None and co.kind != "attributes":
        raise DCGANError("dataset.attributes picks the attributes of condition=attributes; add "
                         "condition=attributes or drop dataset.attributes")
    label_request(ds.name, DATASETS[ds.name], co.kind, attributes)  # labels the data has


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DCGANError(message)


def to_plain_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python values (enums as strings), safe to store anywhere."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def from_plain_dict(values: dict[str, Any]) -> DictConfig:
    """Rebuild a typed, struct-mode config from `to_plain_dict` output (e.g. from a checkpoint).
    Configs saved before augment had options (a bare list of operations) are read as such;
    their samples came from BatchNorm's running statistics, so they keep doing so."""
    if isinstance(values.get("augment"), list):
        values = {**values, "augment": {"ops": values["augment"]}}
    if "recalibrate_bn" not in values.get("ema", {"recalibrate_bn": None}):
        values = {**values, "ema": {**values["ema"], "recalibrate_bn": False}}
    schema = OmegaConf.structured(TrainConfig)
    return OmegaConf.merge(schema, values)


def expand_shorthands(overrides: list[str]) -> list[str]:
    """`augment=[...]` is short for `augment.ops=[...]` (as it was written before augment had
    options of its own)."""
    return [f"augment.ops={arg.partition('=')[2]}" if arg.startswith("augment=[") else arg
            for arg in overrides]


# Overrides that change the shapes of the networks cannot be applied to a checkpoint.
ARCHITECTURE_KEYS = ("dataset.channels", "dataset.image_size", "dataset.attributes",
                     "condition.kind", "condition.style")
RESUMABLE_MODEL_KEYS = ("model.sync_bn",)  # change how BatchNorm syncs, not the weights


def apply_resume_overrides(saved: dict[str, Any], composed: DictConfig,
                           task_overrides: list[str]) -> DictConfig:
    """The checkpoint's config with the user's command-line overrides applied on top.

    Overrides that would change the networks (model.*, channels, image size, another data
    set) are refused; the rest (epochs, lr, log_every, dataset.root, ...) are applied and logged.
    """
    cfg = from_plain_dict(saved)
    for override in task_overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra."):
            continue
        if key == "condition":  # the group: condition=class
            if value != cfg.condition.kind:
                raise DCGANError(f"cannot resume with condition={value}: the checkpoint was "
                                 f"trained with condition={cfg.condition.kind}; start a new run "
                                 "(init_from=... with init_from_unconditional=true starts a "
                                 "conditional run from an unconditional one)")
            continue
        if key in ("dataset", "model"):
            if value != cfg[key].name:
                raise DCGANError(f"cannot resume with {key}={value}: the checkpoint was trained "
                                 f"with {key}={cfg[key].name}; start a new run instead")
            continue
        old, new = OmegaConf.select(cfg, key), OmegaConf.select(composed, key)
        if old == new:
            continue
        if (key.startswith("model.") and key not in RESUMABLE_MODEL_KEYS) or key in ARCHITECTURE_KEYS:
            raise DCGANError(f"cannot resume with {key}={new}: the checkpoint's networks were "
                             f"built with {key}={old}; start a new run to change the architecture")
        log.info("resume: %s changed from %s to %s", key, old, new)
        OmegaConf.update(cfg, key, new, merge=False)
    cfg.resume = composed.resume
    return cfg


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """train.yaml composed with these overrides, as dcgan-train composes it (for dcgan-prepare,
    the tests and the benchmark); a bad override is a DCGANError."""
    overrides = expand_shorthands(list(overrides))
    check_overrides(overrides)
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DCGANError(f"bad override: {first_line}") from error


# -- what an override may name -----------------------------------------------------------------

def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse in one line what Hydra would refuse with a screenful: an override that does not
    parse, a key the schema does not know (`epoch=20`, `+epoch=20`: the closest keys are named),
    an option a config group does not have (`dataset=celebb`) and a value of the wrong type
    (`epochs=many`). Hydra's own settings (`hydra.*`, `hydra/...`) are left to Hydra."""
    parser = OverridesParser.create()
    typed: Optional[DictConfig] = None  # the schema, with the values so far merged in
    for line in overrides:
        override = _parse_override(parser, line)
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")) or override.package:
            continue
        if key in config_groups():
            _check_group_choice(override)
        elif not known_key(key):
            raise DCGANError(f"bad override: {line}: the config has no key {key}"
                             + (closest_keys(key) or "; dcgan-train --help lists the keys"))
        elif override.type in (OverrideType.CHANGE, OverrideType.FORCE_ADD):
            typed = OmegaConf.structured(TrainConfig) if typed is None else typed
            _check_value_type(override, typed)


def _parse_override(parser: OverridesParser, line: str) -> Override:
    try:
        return parser.parse_override(line)
    except HydraException as error:
        reasons = [text.strip() for text in str(error).splitlines()
                   if text.strip() not in ("", "^") and not text.startswith(
                       ("See https", "Error parsing override", "LexerNoViableAltException"))]
        reason = reasons[0] if reasons else "it is not of the form key=value"
        raise DCGANError(f"bad override: {line}: {reason} (overrides are key=value, e.g. "
                         "epochs=20)") from error


@functools.lru_cache(maxsize=None)
def config_groups() -> dict[str, tuple[str, ...]]:
    """The config groups (folders of configs/) and their options (the YAML files in them)."""
    return {folder.name: tuple(sorted(path.stem for path in folder.glob("*.yaml")))
            for folder in sorted(config_dir().iterdir()) if folder.is_dir()}


@functools.lru_cache(maxsize=None)
def default_groups() -> frozenset[str]:
    """The groups train.yaml chooses an option of (`dataset=NAME` changes it); the others are
    added with a +, as in `+experiment=quickstart`."""
    defaults = OmegaConf.load(config_dir() / "train.yaml").get("defaults", [])
    return frozenset(str(key) for entry in defaults if isinstance(entry, DictConfig)
                     for key in entry)


def _check_group_choice(override: Override) -> None:
    group, line = override.key_or_group, override.input_line
    if override.is_delete():
        return
    if group not in default_groups() and override.type == OverrideType.CHANGE:
        raise DCGANError(f"bad override: {line}: {group} is added to the config with a +, "
                         f"e.g. +{line}")
    value = override.value()
    names = value.list if isinstance(value, ChoiceSweep) else [value]
    options = config_groups()[group]
    for name in names:
        if isinstance(name, str) and name not in options:
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise DCGANError(f"bad override: {line}: {group} has no option {name}{hint}; "
                             f"the options are {', '.join(options)}")


@functools.lru_cache(maxsize=None)
def schema_keys() -> dict[str, bool]:
    """Every dotted key of the schema, sections (`model`) and values (`model.ngf`) alike,
    mapped to whether it holds a list (whose items `key.N` also name)."""
    found: dict[str, bool] = {}

    def walk(schema: type, prefix: str) -> None:
        for name, hint in get_type_hints(schema).items():
            key = prefix + name
            found[key] = get_origin(hint) is list
            if is_dataclass(hint):
                walk(hint, key + ".")

    walk(TrainConfig, "")
    return found


def known_key(key: str) -> bool:
    """Whether `key` names a value or a section of the schema (or an item of a list in it)."""
    head, _, index = key.rpartition(".")
    return key in schema_keys() or (index.isdigit() and schema_keys().get(head, False))


def closest_keys(key: str, within: str = "") -> str:
    """'; did you mean X?' with the keys (those starting with `within`) nearest to an unknown
    one, by the whole key or by its last part (`ngf=8` -> model.ngf), or '' when none is."""
    leaf = key.rpartition(".")[2].lower()
    scores = {}
    added = [f"+{group}" for group in config_groups() if group not in default_groups()]
    for known in [name for name in [*schema_keys(), *added] if name.startswith(within)]:
        whole = difflib.SequenceMatcher(None, key.lower(), known.lower()).ratio()
        last = difflib.SequenceMatcher(None, leaf, known.rpartition(".")[2].lower()).ratio()
        scores[known] = max(whole, last)
    best = max(scores.values(), default=0.0)
    close = [known for known, score in sorted(scores.items(), key=lambda item: -item[1])
             if score >= max(0.75, best - 0.05)][:3]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _check_value_type(override: Override, typed: DictConfig) -> None:
    """The value against the key's type in the schema, merged as Hydra will merge it."""
    value = override.value()
    if override.is_sweep_override() or (isinstance(value, str) and "${" in value):
        return
    try:
        OmegaConf.update(typed, override.key_or_group, value, merge=True)
    except OmegaConfBaseException as error:
        reason = str(error).strip().splitlines()[0]
        raise DCGANError(f"bad override: {override.input_line}: {reason}") from error


# -- typed settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSettings:
    """Everything a training run reads, resolved from a validated config."""

    gan: GANSettings
    loop: LoopSettings
    checkpoints: CheckpointSettings
    evaluation: EvaluationSettings
    guard: GuardSettings
    nonfinite: NonFiniteSettings
    on_bad_image: str
    ddp_check_every: int
    ada: Optional[AdaSettings] = None  # augment.p=ada; None: p as configured
    lr_tail: Optional[LRTailSettings] = None  # lr_schedule=linear_tail; None: constant


def resolve(cfg: DictConfig, steps_per_epoch: int,
            labels: Optional[LabelSpace] = None) -> RunSettings:
    """The settings of a run whose epochs hold `steps_per_epoch` steps (per rank), and whose
    data has the label space `labels` (a conditional run; None: unconditional)."""
    from dcgan.nets.augment import AdaSettings
    from dcgan.training.hooks.lr_tail import LRTailSettings
    from dcgan.training.hooks.nonfinite import NonFiniteSettings
    from dcgan.training.hooks.saving import CheckpointSettings
    from dcgan.training.hooks.scoring import EvaluationSettings
    from dcgan.training.settings import LoopSettings

    ev = cfg.eval
    return RunSettings(
        gan=gan_settings(cfg, steps_per_epoch, labels),
        loop=LoopSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, log_every=cfg.log_every,
                          seed=cfg.seed, num_workers=cfg.num_workers,
                          data_on_device=cfg.data_on_device,
                          data_on_device_fraction=cfg.data_on_device_fraction),
        checkpoints=CheckpointSettings(every_steps=cfg.ckpt_every_steps,
                                       keep_last=cfg.keep_last, select=ev.select),
        evaluation=EvaluationSettings(every=ev.every, n_samples=ev.n_samples, fid=ev.fid,
                                      inception_weights=ev.inception_weights, seed=ev.seed),
        guard=guard_settings(cfg),
        nonfinite=NonFiniteSettings(policy=_name(cfg.nonfinite.policy),
                                    lr_factor=cfg.nonfinite.lr_factor,
                                    max_retries=cfg.nonfinite.max_retries),
        on_bad_image=_name(cfg.dataset.on_bad_image),
        ddp_check_every=cfg.ddp_check_every,
        ada=(AdaSettings(target=cfg.augment.target, interval=cfg.augment.interval,
                         speed_images=cfg.augment.speed_images)
             if cfg.augment.p == "ada" else None),
        lr_tail=(LRTailSettings(fraction=cfg.lr_tail_fraction,
                                total_steps=cfg.epochs * steps_per_epoch)
                 if _name(cfg.lr_schedule) == "linear_tail" else None),
    )


def architecture(cfg: DictConfig, labels: Optional[LabelSpace] = None) -> Architecture:
    """The networks' shapes; a conditional config needs the data's `labels` (their count)."""
    from dcgan.nets.models import Architecture

    m, kind = cfg.model, cfg.condition.kind
    if kind != "none" and (labels is None or labels.kind != kind):
        raise DCGANError(f"condition={kind} needs the data set's {kind} labels")
    return Architecture.derive(nz=m.nz, ngf=m.ngf, ndf=m.ndf, channels=cfg.dataset.channels,
                               image_size=cfg.dataset.image_size, loss=_name(cfg.loss),
                               d_batchnorm=m.d_batchnorm, spectral_norm=m.spectral_norm,
                               condition=kind, label_size=labels.size if labels else 0,
                               condition_style=cfg.condition.style)


def gan_settings(cfg: DictConfig, steps_per_epoch: int,
                 labels: Optional[LabelSpace] = None) -> GANSettings:
    from dcgan.nets.augment import NoiseSchedule
    from dcgan.training.settings import GANSettings

    noise = cfg.instance_noise
    return GANSettings(
        arch=architecture(cfg, labels), loss=_name(cfg.loss),
        lr_g=float(cfg.lr_g if cfg.lr_g is not None else cfg.lr),
        lr_d=float(cfg.lr_d if cfg.lr_d is not None else cfg.lr),
        betas=(cfg.beta1, cfg.beta2), adam=_name(cfg.adam), precision=_name(cfg.precision),
        channels_last=cfg.channels_last, compile=cfg.compile,
        cuda_graphs=str(cfg.cuda_graphs).lower(), sync_bn=cfg.model.sync_bn,
        d_steps=cfg.d_steps, real_label=cfg.real_label, label_flip=cfg.label_flip,
        gp_weight=cfg.gp_weight, augment=tuple(cfg.augment.ops),
        augment_p=augment_p(cfg.augment), track_real_sign=cfg.augment.p == "ada",
        mirror=cfg.dataset.mirror,
        noise=NoiseSchedule(std=noise.std, anneal_epochs=noise.anneal_epochs,
                            run_epochs=cfg.epochs, steps_per_epoch=steps_per_epoch),
        ema_decay=cfg.ema.decay, ema_start_step=cfg.ema.start_step,
        ema_half_life_images=cfg.ema.half_life_images,
        ema_rampup=cfg.ema.rampup if cfg.ema.half_life_images is not None else None,
        recalibrate_bn=cfg.ema.recalibrate_bn, freeze_d=cfg.freeze_d,
        reg=reg_settings(cfg.reg))


def guard_settings(cfg: DictConfig) -> GuardSettings:
    from dcgan.training.collapse import CollapseSettings
    from dcgan.training.hooks.collapse_guard import GuardSettings, RollbackSettings

    co = cfg.collapse
    detector = CollapseSettings(**{f.name: co[f.name] for f in fields(CollapseSettings)})
    rollback = RollbackSettings(**{f.name: co.rollback[f.name] for f in fields(RollbackSettings)})
    return GuardSettings(policy=_name(co.policy), detector=detector, rollback=rollback,
                         loss=_name(cfg.loss))


def _name(value: Any) -> str:
    """An enum member's value (or a plain string) as a string."""
    return str(getattr(value, "value", value))


def config_dir() -> Path:
    """Where the YAML configs are: inside the installed package, or at the repo's top level."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "configs"
    if source_tree.is_dir():
        return source_tree
    raise DCGANError(f"cannot find the dcgan configs (looked in {packaged} and {source_tree}); "
                     "reinstall the package")
