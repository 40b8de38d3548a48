import pytest
import torch
from torch import nn

from dcgan.models import Architecture, Discriminator, Generator, build_models, count_parameters


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
