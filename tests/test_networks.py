import pytest
import torch

from dip import networks
from dip.networks import make_network
from dip.presets import ARCHITECTURES


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("size", [(64, 64), (37, 37), (48, 80), (100, 75)])
def test_every_network_maps_input_to_an_image_of_the_same_size(name, size):
    spec = ARCHITECTURES[name]
    depth = spec.get("settings", {}).get("input_depth", 32)
    if spec.get("settings", {}).get("input") == "meshgrid":
        depth = 2
    net = make_network(spec["net"], depth, 3, seed=0)
    h, w = size
    zh, zw = networks.input_size(net, h, w)
    out = networks.center_crop(net(torch.rand(1, depth, zh, zw)), h, w)
    assert out.shape == (1, 3, h, w)
    assert 0 <= out.min() and out.max() <= 1


def test_default_skip_has_the_original_parameter_count():
    assert networks.count_parameters(networks.skip(32, 3)) == 2_217_831


def test_hourglass_is_skip_without_skip_channels():
    hourglass = networks.count_parameters(networks.hourglass(32, 3))
    assert hourglass < networks.count_parameters(networks.skip(32, 3))
    assert not any(isinstance(m, networks.Concat) for m in networks.hourglass(32, 3).modules())


def test_deep_decoder_is_far_smaller_than_skip():
    assert networks.count_parameters(networks.deep_decoder(64, 3)) * 20 < 2_217_831


def test_same_seed_same_weights_and_different_seed_different():
    a, b, c = (make_network({"kind": "skip"}, 32, 3, seed) for seed in (0, 0, 1))
    pa, pb, pc = (torch.cat([p.flatten() for p in n.parameters()]) for n in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_unknown_builder_is_named():
    with pytest.raises(ValueError, match="unknown network builder 'vgg'"):
        networks.build("vgg", 3, 3)
