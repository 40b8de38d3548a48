"""The typed settings training runs on, resolved from the config at the edge (dcgan.config)
and never changed while training: the pair's (`GANSettings`) and the loop's (`LoopSettings`).
A hook that changes how the pair trains returns new settings from `adjust`; these stay as
configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from dcgan.nets.augment import NoiseSchedule
from dcgan.nets.models import Architecture
from dcgan.nets.regularisers import RegSettings


@dataclass(frozen=True)
class GANSettings:
    """Everything the pair needs, typed and resolved (learning rates are numbers, not null)."""

    arch: Architecture = field(default_factory=Architecture)
    loss: str = "bce"  # bce | hinge | lsgan | wgan_gp
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    adam: str = "auto"  # auto | fused | foreach | for_loop
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    compile: bool = False
    cuda_graphs: str = "auto"  # auto | true | false: replay each kind of step as a CUDA graph
    sync_bn: bool = False  # under torchrun only
    d_steps: int = 1  # D steps per G step
    real_label: float = 1.0
    label_flip: float = 0.0
    gp_weight: float = 10.0
    augment: tuple[str, ...] = ()  # DiffAugment policy, in order
    augment_p: float = 1.0  # chance of each operation per image (adaptive augmentation moves it)
    track_real_sign: bool = False  # report E[sign(D(real))], the signal adaptive augmentation reads
    mirror: bool = False  # flip each real image left-right with probability 1/2
    noise: NoiseSchedule = field(default_factory=NoiseSchedule)
    ema_decay: float = 0.0  # 0: no moving average (unless ema_half_life_images)
    ema_start_step: int = 0
    ema_half_life_images: Optional[float] = None  # the average's half-life in images
    ema_rampup: Optional[float] = None  # half-life at most this times the images seen so far
    recalibrate_bn: bool = False  # re-estimate the sampling generator's BatchNorm statistics
    freeze_d: int = 0  # D's first N convolution blocks stay as they are (fine-tuning)
    reg: RegSettings = field(default_factory=RegSettings)  # LeCam, R1, bCR on D's loss

    @property
    def ema_on(self) -> bool:
        return self.ema_decay > 0 or self.ema_half_life_images is not None



@dataclass(frozen=True)
class LoopSettings:
    epochs: int = 5  # train up to this many epochs (a resumed run continues to it)
    batch_size: int = 128  # per process
    log_every: int = 50  # steps per metric window
    seed: int = 0  # the epoch order, and the RNG of ranks resumed at another world size
    num_workers: Optional[int] = None  # DataLoader workers; None: chosen for the data set
    data_on_device: Any = "auto"  # decoded images in device memory: "auto" | True | False
    data_on_device_fraction: float = 0.25  # auto: at most this fraction of the device's memory
