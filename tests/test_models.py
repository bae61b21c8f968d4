"""Encoders and the projector have the shapes the exercise specifies."""

from __future__ import annotations

import json

import pytest
import torch

from lfr_report.errors import ConfigError
from lfr_report.models import Projector, build_encoder, encoder_arch


@pytest.mark.parametrize("pool", ["flatten", "avg"])
def test_convnet_maps_grayscale_images_to_the_representation(pool):
    encoder = build_encoder("convnet", in_channels=1, dim=128, image_size=28, pool=pool)
    assert encoder(torch.randn(4, 1, 28, 28)).shape == (4, 128)


def test_convnet_flatten_head_sees_the_whole_last_feature_map():
    encoder = build_encoder("convnet", in_channels=3, dim=8, image_size=32, widths=(4, 8, 16))
    assert encoder.head[0].in_features == 16 * 8 * 8  # 32 -> 32 -> 16 -> 8
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 8)


@pytest.mark.parametrize("args", [
    ("convnet", 1, 16, 28, (8, 16), "flatten"),
    ("convnet", 3, 8, 32, (4, 8, 16), "avg"),
    ("resnet20", 3, 8, 32, (4, 8, 16), "avg"),
])  # fmt: skip
def test_encoder_arch_rebuilds_the_same_network(args, tmp_path):
    """What a run stores (``encoder_arch`` as JSON, the weights) rebuilds the network it trained,
    computing the same function; another description is another network, whose weights do not fit."""
    torch.manual_seed(0)
    original = build_encoder(*args).eval()  # the network as the experiment built it
    arch = encoder_arch(*args)
    torch.save({"arch": json.loads(json.dumps(arch)), "state_dict": original.state_dict()}, tmp_path / "encoder.pt")
    saved = torch.load(tmp_path / "encoder.pt")
    torch.manual_seed(1)  # other initial weights: only the loaded ones can make the outputs equal
    rebuilt = build_encoder(**saved["arch"])
    rebuilt.load_state_dict(saved["state_dict"])
    x = torch.randn(2, arch["in_channels"], arch["image_size"], arch["image_size"])
    assert torch.equal(rebuilt.eval()(x), original(x))
    wider = build_encoder(**{**saved["arch"], "widths": [2 * w for w in args[4]]})
    with pytest.raises(RuntimeError, match="size mismatch"):
        wider.load_state_dict(original.state_dict())


def test_resnet18_has_the_cifar_stem_and_a_128_d_output():
    encoder = build_encoder("resnet18", in_channels=3, dim=128)
    stem = encoder.backbone.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert isinstance(encoder.backbone.maxpool, torch.nn.Identity)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_resnet20_has_nine_residual_blocks_and_the_papers_size():
    from lfr_report.models.encoders import BasicBlock

    encoder = build_encoder("resnet20", in_channels=3, dim=128, widths=(16, 32, 64))
    assert sum(isinstance(m, BasicBlock) for m in encoder.modules()) == 9
    convs = [m for m in encoder.features.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # the stem and two per block: with the final linear layer, 20 weight layers
    assert 0.26e6 < sum(p.numel() for p in encoder.features.parameters()) < 0.28e6  # He et al.: 0.27 M
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    assert encoder.features[:-2](torch.randn(1, 3, 32, 32)).shape == (1, 64, 8, 8)  # two stages halve 32 -> 8


def test_projector_is_three_layers_of_width_d():
    projector = Projector(128, 512)
    linear = [m for m in projector.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(128, 512), (512, 512), (512, 512)]
    assert projector(torch.randn(3, 128)).shape == (3, 512)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    encoder = build_encoder("convnet", 1, 16, widths=(8, 16)).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = encoder(x)
    encoder = encoder.to(memory_format=torch.channels_last)
    torch.testing.assert_close(encoder(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-4)


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="known encoders: convnet, resnet20, resnet18"):
        build_encoder("vit", 3, 128)
