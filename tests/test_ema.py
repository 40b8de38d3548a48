import io

import pytest
import torch
from torch import nn

from dcgan.nets.ema import EMA
from dcgan.nets.models import Architecture, Generator, build_models


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def nudge(module: nn.Module, seed: int) -> None:
    """A stand-in for an optimizer step: every parameter moves."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator))


def distance(ema: EMA, live: nn.Module) -> float:
    return sum((a - b).norm().item() for a, b in zip(ema.module.parameters(), live.parameters()))


def test_the_average_is_a_frozen_independent_copy():
    live = small_net()
    ema = EMA(live, decay=0.9)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in live.parameters())  # the live network is untouched
    nudge(live, 1)
    assert distance(ema, live) > 0  # no shared storage


def test_updates_follow_the_closed_form():
    live, decay = small_net(), 0.9
    p0 = params(live)
    ema = EMA(live, decay)
    nudge(live, 1)
    p1 = params(live)
    ema.update(live, step=1)
    nudge(live, 2)
    p2 = params(live)
    ema.update(live, step=2)
    for name, averaged in ema.module.named_parameters():
        expected = decay * (decay * p0[name] + (1 - decay) * p1[name]) + (1 - decay) * p2[name]
        assert torch.allclose(averaged, expected, atol=1e-6)
        assert not torch.allclose(averaged, p2[name])  # it lags the live weights


def test_decay_zero_is_the_live_network():
    live = small_net()
    ema = EMA(live, decay=0.0)
    nudge(live, 1)
    ema.update(live, step=1)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.parameters(), live.parameters()))


def test_it_closes_in_on_weights_that_stay_put():
    live = small_net()
    ema = EMA(live, decay=0.5)
    nudge(live, 1)
    gaps = []
    for step in range(1, 6):
        ema.update(live, step)
        gaps.append(distance(ema, live))
    assert all(later == pytest.approx(earlier * 0.5, rel=1e-4)
               for earlier, later in zip(gaps, gaps[1:]))


def test_before_start_step_it_copies():
    live = small_net()
    ema = EMA(live, decay=0.99, start_step=3)
    for step in (1, 2, 3):
        nudge(live, step)
        ema.update(live, step)
        assert distance(ema, live) == 0
    nudge(live, 4)
    ema.update(live, 4)
    assert distance(ema, live) > 0


def test_buffers_are_copied():
    live = small_net()
    ema = EMA(live, decay=0.9)
    live(torch.randn(8, 3))  # train mode: BatchNorm's running statistics move
    ema.update(live, step=1)
    for (name, averaged), (_, current) in zip(ema.module.named_buffers(), live.named_buffers()):
        assert torch.equal(averaged, current), name
    assert ema.module[1].num_batches_tracked.item() == 1


def test_state_dict_round_trips_through_a_weights_only_file():
    torch.manual_seed(0)
    arch = Architecture(nz=8, ngf=4, ndf=4, image_size=32)
    live, _ = build_models(arch)
    ema = EMA(live, decay=0.9)
    nudge(live, 1)
    live(torch.randn(4, 8))
    ema.update(live, step=1)
    buffer = io.BytesIO()
    torch.save({"generator_ema": ema.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["generator_ema"]

    restored = EMA(Generator(arch), decay=0.9)
    restored.load_state_dict(state)
    z = torch.randn(3, 8)
    assert torch.equal(restored.module(z), ema.module(z))
    plain = Generator(arch).eval()
    plain.load_state_dict(state)  # the same keys as a generator's: sampling code can load it
    assert torch.equal(plain(z), ema.module(z))


def test_a_different_network_is_refused():
    ema = EMA(small_net(), decay=0.9)
    with pytest.raises(ValueError, match="do not match"):
        ema.update(nn.Sequential(nn.Linear(3, 4)), step=1)
    with pytest.raises(ValueError, match="decay"):
        EMA(small_net(), decay=1.0)
