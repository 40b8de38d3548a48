"""The CUDA paths: autocast precisions, GradScaler, channels_last, compile, pinned-memory loading
and exact resume, on a GPU. Skipped (with the reason) on machines without one, such as CI; run
them where there is one: `python -m pytest -q tests/test_cuda.py`."""

import json

import pytest
import torch
from safetensors import safe_open

from dcgan.config import gan_settings
from dcgan.runtime.process import configure_backends, seed_everything
from dcgan.store.checkpoints import load_checkpoint
from dcgan.training.pair import GANPair
from tests.conftest import TINY
from tests.test_gan import losses  # loss_d, loss_g of each step: [d1, g1, d2, g2, ...]

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ON_GPU = [*[o for o in TINY if not o.startswith("device=")], "device=cuda"]
FAKE = [*ON_GPU, "dataset=fake", "dataset.size=64"]


def make_trainer(make_config, tmp_path, *overrides) -> GANPair:
    """The GAN pair on the GPU (the name is kept from when the trainer held the step)."""
    cfg = make_config(*FAKE, *overrides)
    device = torch.device("cuda")
    configure_backends(device, None)
    seed_everything(cfg.seed)
    return GANPair(gan_settings(cfg, steps_per_epoch=4), device)


def test_auto_precision_is_bf16_on_cuda(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path)
    assert trainer.device.type == "cuda"
    assert trainer.autocast_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    assert next(trainer.generator.parameters()).is_cuda
    assert torch.backends.cudnn.benchmark


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_autocast_trains_and_stays_near_fp32(make_config, tmp_path, precision):
    trainer = make_trainer(make_config, tmp_path, f"precision={precision}")
    assert not trainer.scaler_d.is_enabled()  # no loss scaling outside fp16
    measured = losses(trainer)
    reference = losses(make_trainer(make_config, tmp_path, "precision=fp32"))
    assert all(torch.isfinite(torch.tensor(measured)))
    # autocast changes rounding, not the mathematics: the first steps' losses stay close
    assert measured == pytest.approx(reference, rel=0.05, abs=0.02)


def test_fp16_scales_the_losses_and_trains(make_config, tmp_path):
    trainer = make_trainer(make_config, tmp_path, "precision=fp16")
    assert trainer.scaler_d.is_enabled() and trainer.scaler_g.is_enabled()
    g_before = [p.detach().clone() for p in trainer.generator.parameters()]
    measured = losses(trainer, steps=1)  # before the fp32 trainer reseeds the RNG
    reference = losses(make_trainer(make_config, tmp_path, "precision=fp32"), steps=1)
    assert measured[0] == pytest.approx(reference[0], rel=0.01)  # D loss before any update
    measured += [loss for _ in range(3) for loss in losses(trainer)]
    assert all(torch.isfinite(torch.tensor(measured)))
    # GradScaler skips the steps whose scaled gradients overflow while it finds its scale
    # (so fp16's losses part from fp32's), then the steps go through and the weights move
    assert 0 < trainer.scaler_g.get_scale() < float("inf")
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.generator.parameters()))


def test_channels_last_gives_the_nchw_losses_on_cuda(make_config, tmp_path):
    fast = losses(make_trainer(make_config, tmp_path, "precision=fp32", "channels_last=true"))
    plain = losses(make_trainer(make_config, tmp_path, "precision=fp32", "channels_last=false"))
    assert fast == pytest.approx(plain, rel=1e-2, abs=1e-3)  # TF32 convolutions in both


def test_compiled_networks_train_like_eager_ones_on_cuda(make_config, tmp_path):
    compiled = losses(make_trainer(make_config, tmp_path, "precision=fp32", "compile=true"))
    eager = losses(make_trainer(make_config, tmp_path, "precision=fp32"))
    assert compiled == pytest.approx(eager, rel=1e-2, abs=1e-3)


def test_cli_trains_on_cuda_and_resumes_exactly(cli, tmp_path):
    """Image files through pinned memory to the GPU; 2 epochs at once equal 1 + resume 1."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [*ON_GPU, "eval.n_samples=32"]
    cli("dcgan-train", *common, "epochs=2", f"hydra.run.dir={straight}", check=True)
    cli("dcgan-train", *common, "epochs=1", f"hydra.run.dir={split}", check=True)
    cli("dcgan-train", f"resume={split}", "epochs=2", check=True)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] > 0
    for network in ("generator", "discriminator"):
        for key, value in a[network].items():
            if value.is_floating_point():
                # cuDNN may pick other (equally valid) algorithms in the second process
                assert torch.allclose(value, b[network][key], rtol=1e-3, atol=1e-4), key
    with safe_open(str(straight / "checkpoints" / "generator.safetensors"), "pt") as file:
        assert json.loads(file.metadata()["arch"])["nz"] == 16  # saved from the GPU, read on CPU


@pytest.mark.parametrize("overrides", [
    ["augment=[translation,color,cutout]", "real_label=0.9", "label_flip=0.05",
     "instance_noise.std=0.1", "ema.decay=0.99"],
    ["loss=wgan_gp"],
    ["loss=hinge", "model.spectral_norm=true"],
    ["loss=lsgan", "lr_d=1e-4", "lr_g=4e-4"],
])
def test_stabilisers_and_losses_train_on_cuda(make_config, tmp_path, overrides):
    trainer = make_trainer(make_config, tmp_path, *overrides)
    g_before = [p.detach().clone() for p in trainer.generator.parameters()]
    measured = losses(trainer)
    assert all(torch.isfinite(torch.tensor(measured)))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.generator.parameters()))
    if trainer.ema is not None:  # the average is on the GPU too, and lags the live weights
        live, average = trainer.generator.state_dict(), trainer.ema.module.state_dict()
        assert all(average[key].is_cuda for key in average)
        assert any(not torch.equal(live[key], average[key]) for key in live
                   if live[key].is_floating_point())


def test_decoded_data_lives_on_the_gpu_and_trains_like_the_loader(make_config, tmp_path):
    """data_on_device=auto puts the digits in GPU memory; the batches are the loader's (the same
    images in the same order), and training from them gives the loader's losses."""
    from dcgan.cli.run import build_trainer
    from dcgan.config import validate
    from dcgan.data.datasets import build_dataset
    from dcgan.data.loader import DeviceFeed

    def trainer_with(setting: str):
        cfg = make_config(*ON_GPU, "dataset=digits", "epochs=1", "eval.every=0",
                          f"data_on_device={setting}")
        validate(cfg)
        seed_everything(0)
        return build_trainer(cfg, build_dataset(cfg.dataset), tmp_path / setting,
                             torch.device("cuda"))

    fed, loaded = trainer_with("auto"), trainer_with("false")
    assert isinstance(fed.loader, DeviceFeed) and fed.loader.images.is_cuda
    fed.sampler.set_epoch(0)
    loaded.sampler.set_epoch(0)
    for (a, _, _), (b, _, _) in zip(fed.loader, loaded.loader):
        assert a.is_cuda and torch.equal(a, b.cuda())
    assert fed.fit().finished and loaded.fit().finished
    for name, tensor in loaded.gan.generator.state_dict().items():
        # the same batches; cuDNN's own nondeterminism is all that may differ
        torch.testing.assert_close(fed.gan.generator.state_dict()[name], tensor, rtol=1e-3,
                                   atol=1e-3)


# every per-step number a CUDA graph reads from the device (augmentation chance, noise std,
# EMA weight under a ramp-up) and two kinds of step (with a G step and without)
GRAPHED = ["augment=[translation,color,cutout]", "augment.p=0.4", "instance_noise.std=0.1",
           "ema.half_life_images=200", "ema.rampup=0.5", "d_steps=2"]


def graphed_run(make_config, tmp_path, setting: str, precision: str, steps: int = 12,
                extra: tuple[str, ...] = ()):
    """Metrics of `steps` steps (losses checked on the host every fifth, as the loop does)
    and the final state; deterministic cuDNN, so eager and replayed steps can be compared."""
    pair = make_trainer(make_config, tmp_path, f"cuda_graphs={setting}",
                        f"precision={precision}", *GRAPHED, *extra)
    # after configure_backends turned benchmark on; the test's monkeypatch restores both
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    images = torch.rand(16 * steps, 3, 64, 64, device="cuda").mul(2).sub(1).split(16)
    metrics = [pair.train_step(real, step, check_finite=(step + 1) % 5 == 0)
               for step, real in enumerate(images)]
    torch.cuda.synchronize()
    return pair, [{k: v.item() for k, v in m.items()} for m in metrics], pair.state_dict()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graphs_train_as_eager_steps_do(make_config, tmp_path, monkeypatch, precision):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    eager, eager_metrics, eager_state = graphed_run(make_config, tmp_path, "false", precision)
    graphed, graphed_metrics, graphed_state = graphed_run(make_config, tmp_path, "true",
                                                          precision)
    assert eager.graphs is None and len(graphed.graphs.captured) == 2
    for network in ("generator", "discriminator", "generator_ema"):
        for key, value in eager_state[network].items():
            if precision == "fp32":  # the same kernels in the same order: the same bits
                assert torch.equal(value, graphed_state[network][key]), f"{network}.{key}"
            elif value.is_floating_point():  # the noise std rounds to bf16 on the device
                torch.testing.assert_close(graphed_state[network][key], value, rtol=2e-2,
                                           atol=2e-3)
    if precision == "fp32":
        assert graphed_metrics == eager_metrics
    else:
        for a, b in zip(eager_metrics, graphed_metrics):
            assert b == pytest.approx(a, rel=2e-2, abs=2e-3)


def test_cli_trains_with_cuda_graphs_and_resumes(cli, tmp_path):
    """The real loop with its steps replayed from graphs: checkpoints hold what the graphs
    trained, and a run begun eagerly resumes with graphs (its Adam made capturable) and
    carries on alike."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [*ON_GPU, "eval.n_samples=32", "log_every=3", "dataset=fake"]  # 4 batches of 16
    cli("dcgan-train", *common, "cuda_graphs=true", "epochs=3", f"hydra.run.dir={straight}",
        check=True)
    cli("dcgan-train", *common, "cuda_graphs=false", "epochs=2", f"hydra.run.dir={split}",
        check=True)
    cli("dcgan-train", f"resume={split}", "epochs=3", "cuda_graphs=true", check=True)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 12
    for network in ("generator", "discriminator"):
        for key, value in a[network].items():
            assert torch.isfinite(value.float()).all(), key
            if value.is_floating_point():  # cuDNN may pick other algorithms per process
                assert torch.allclose(value, b[network][key], rtol=1e-3, atol=1e-4), key


def test_regularised_steps_captured_as_graphs_train_as_eager_ones(make_config, tmp_path,
                                                                 monkeypatch):
    """LeCam's in-place anchors, bCR's augmentation and R1's double backward under capture."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    regularised = ("reg.lecam.weight=0.3", "reg.r1.gamma=1", "reg.r1.interval=3",
                   "reg.bcr.real=1", "reg.bcr.fake=1")
    _, eager_metrics, eager_state = graphed_run(make_config, tmp_path, "false", "fp32",
                                                extra=regularised)
    graphed, graphed_metrics, graphed_state = graphed_run(make_config, tmp_path, "true", "fp32",
                                                          extra=regularised)
    assert any(kind[-1] for kind in graphed.graphs.captured)  # an R1 step was captured
    assert graphed_metrics == eager_metrics
    assert torch.equal(graphed_state["lecam"]["real"], eager_state["lecam"]["real"])
