import io
import json

import pytest
import torch
from torch import nn

from dcgan.nets.models import (
    Architecture,
    Discriminator,
    Generator,
    build_models,
    count_parameters,
)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_output_range(channels):
    generator, discriminator = build_models(Architecture(ngf=16, ndf=16, channels=channels))
    images = generator(torch.randn(5, 100, 1, 1))
    assert images.shape == (5, channels, 64, 64)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (5,)
    assert generator(torch.randn(5, 100)).shape == (5, channels, 64, 64)  # flat z works too


@pytest.mark.parametrize("size", [32, 128])
def test_other_supported_sizes(size):
    generator, discriminator = build_models(Architecture(ngf=4, ndf=4, image_size=size))
    images = generator(torch.randn(2, 100))
    assert images.shape == (2, 3, size, size)
    assert discriminator(images).shape == (2,)


def test_parameter_counts_match_the_paper_tables():
    generator, discriminator = build_models(Architecture())
    assert count_parameters(generator) == 3_576_704
    assert count_parameters(discriminator) == 2_765_568


def test_layers_follow_the_dcgan_tables():
    generator = Generator(Architecture())
    convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert [(c.stride[0], c.padding[0]) for c in convs] == [(1, 0)] + [(2, 1)] * 4
    assert all(c.kernel_size == (4, 4) and c.bias is None for c in convs)
    assert isinstance(generator.main[-1], nn.Tanh)

    discriminator = Discriminator(Architecture())
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert [(c.stride[0], c.padding[0]) for c in convs] == [(2, 1)] * 4 + [(1, 0)]
    # no BatchNorm after the input layer, then one after each of the three middle convs
    assert isinstance(discriminator.main[1], nn.LeakyReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules()) == 3
    assert all(m.negative_slope == 0.2 for m in discriminator.modules()
               if isinstance(m, nn.LeakyReLU))
    assert not isinstance(discriminator.main[-1], nn.Sigmoid)  # D returns logits


def test_weight_init_statistics():
    torch.manual_seed(0)
    generator, _ = build_models(Architecture())
    conv = generator.main[3].weight  # 512 -> 256 transposed conv, 2M weights
    assert abs(conv.mean().item()) < 1e-3
    assert conv.std().item() == pytest.approx(0.02, rel=0.02)
    norm = generator.main[1]
    assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert norm.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert torch.count_nonzero(norm.bias) == 0


def largest_singular_values(discriminator):
    """sigma_max of each convolution's effective weight, as the forward pass uses it."""
    discriminator.eval()  # reading a spectrally normalised weight in train mode iterates
    with torch.no_grad():
        values = [torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), ord=2)
                  for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    discriminator.train()
    return torch.stack(values)


def test_defaults_leave_the_paper_discriminator():
    arch = Architecture()
    assert arch.d_batchnorm is True and arch.d_spectral_norm is False
    discriminator = Discriminator(arch)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in discriminator.modules())
    assert all(m.bias is None for m in discriminator.modules() if isinstance(m, nn.Conv2d))


def test_architecture_round_trips_through_a_plain_dict():
    arch = Architecture(ngf=8, d_batchnorm=False, d_spectral_norm=True)
    plain = arch.as_dict()
    assert plain["d_batchnorm"] is False and plain["d_spectral_norm"] is True
    assert Architecture(**json.loads(json.dumps(plain))) == arch
    # a checkpoint written before these fields existed still loads, as the textbook D
    old = {k: v for k, v in Architecture().as_dict().items() if not k.startswith("d_")}
    assert Architecture(**old) == Architecture()


@pytest.mark.parametrize("batchnorm", [True, False])
def test_spectral_norm_bounds_every_convolution(batchnorm):
    torch.manual_seed(0)
    _, discriminator = build_models(
        Architecture(ngf=4, ndf=8, d_spectral_norm=True, d_batchnorm=batchnorm))
    # init_weights refreshes the power iteration, so sigma is right from the start ...
    assert torch.allclose(largest_singular_values(discriminator), torch.ones(5), rtol=0.05)
    for _ in range(5):  # ... and stays right as the power iteration runs in train mode
        logits = discriminator(torch.randn(4, 3, 64, 64))
    assert logits.shape == (4,)
    assert torch.allclose(largest_singular_values(discriminator), torch.ones(5), rtol=0.05)
    has_batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
    assert has_batchnorm == batchnorm


def test_spectral_norm_keeps_the_dcgan_init_and_the_parameter_count():
    torch.manual_seed(0)
    _, discriminator = build_models(Architecture(d_spectral_norm=True))
    assert count_parameters(discriminator) == 2_765_568  # u and v are buffers
    raw = discriminator.main[8].parametrizations.weight.original  # 256 -> 512, 2M weights
    assert abs(raw.mean().item()) < 1e-3
    assert raw.std().item() == pytest.approx(0.02, rel=0.02)


def test_discriminator_without_batchnorm():
    torch.manual_seed(0)
    _, discriminator = build_models(Architecture(ndf=8, d_batchnorm=False))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    # the middle convolutions carry the shift BatchNorm used to provide, starting at 0
    assert [c.bias is not None for c in convs] == [False, True, True, True, False]
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs[1:4])
    images = torch.randn(3, 3, 64, 64)
    assert discriminator(images).shape == (3,)
    # without BatchNorm each image's logit is independent of the rest of the batch
    assert torch.allclose(discriminator(images)[:1], discriminator(images[:1]), atol=1e-6)


@pytest.mark.parametrize("options", [dict(d_spectral_norm=True),
                                     dict(d_spectral_norm=True, d_batchnorm=False),
                                     dict(d_batchnorm=False)])
def test_discriminator_state_dict_round_trips(options):
    arch = Architecture(ndf=8, **options)
    torch.manual_seed(0)
    _, trained = build_models(arch)
    for _ in range(3):
        trained(torch.randn(4, 3, 64, 64))
    fresh = Discriminator(arch)
    fresh.load_state_dict(torch.load(_saved(trained.state_dict()), weights_only=True))
    images = torch.randn(4, 3, 64, 64)
    assert torch.equal(trained.eval()(images), fresh.eval()(images))


def _saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer
