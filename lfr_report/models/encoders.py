"""Encoders f: image batch (B, C, H, W) -> representation y (B, dim).

Both encoders end the way the course's VICReg encoder does: backbone features ->
``Linear(features, 512)`` -> ``BatchNorm1d`` -> ``ReLU`` -> ``Linear(512, dim)``, so the
representation used downstream is the output of that last linear layer.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import resnet18

from lfr_report.errors import ConfigError


def _representation_head(features: int, dim: int, hidden: int = 512) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, dim),
    )


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem of the course's ``models.py``.

    The 7x7 stride-2 stem becomes a 3x3 stride-1 convolution (no padding, as the
    course's code has it) and the max-pool is removed, so 32x32 images keep their
    resolution through the first stage. The assignment's backbone; meant for a GPU.
    """

    def __init__(self, in_channels: int = 3, dim: int = 128) -> None:
        super().__init__()
        backbone = resnet18(weights=None)
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1)
        backbone.maxpool = nn.Identity()
        backbone.fc = nn.Identity()  # the head below starts with the course's fc (512 -> 512)
        self.backbone = backbone
        self.head = _representation_head(512, dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between them and after the residual sum; a 1x1
    strided projection on the shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return (self.body(x) + self.shortcut(x)).relu_()


class ResNet20Encoder(nn.Module):
    """The CIFAR ResNet of He et al. (2016, section 4.2) with n = 3: a 3x3 stem, then three
    stages of three basic blocks (widths ``widths``, the last two stages halving the
    resolution), global average pooling and the representation head. Its nine residual
    blocks of two conv-BN-ReLU layers are the 'ResNet' of the SimCLR example report;
    about 0.27 M weights before the head, so it trains on a CPU where ResNet-18 does not.
    """

    def __init__(self, in_channels: int = 3, dim: int = 128, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_block(in_channels, widths[0], stride=1)]
        c_in = widths[0]
        for i, width in enumerate(widths):
            for j in range(3):
                layers.append(BasicBlock(c_in, width, stride=2 if i > 0 and j == 0 else 1))
                c_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _representation_head(c_in, dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvNetEncoder(nn.Module):
    """A small ConvNet for the CPU path: one 3x3 conv-BN-ReLU block per width, each after
    the first halving the resolution, then the representation head.

    ``pool="flatten"`` feeds the head the whole final feature map (for 28x28 inputs and
    three widths, 7x7 per channel), keeping where in the image a feature fired; on
    Fashion-MNIST this probes several points better than ``pool="avg"`` (global average
    pooling, which discards the layout) at the same training budget. With widths
    (32, 64, 128, 256) and ``avg`` it is the '4-block ConvNet' of the SimCLR example.
    """

    def __init__(
        self,
        in_channels: int = 1,
        dim: int = 128,
        widths: tuple[int, ...] = (32, 64, 128),
        pool: str = "flatten",
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if not widths:
            raise ConfigError("the convnet encoder needs at least one width")
        if pool not in ("flatten", "avg"):
            raise ConfigError(f"unknown pool {pool!r}; use flatten or avg")
        blocks, c_in, side = [], in_channels, image_size
        for i, width in enumerate(widths):
            blocks.append(_conv_block(c_in, width, stride=1 if i == 0 else 2))
            side = side if i == 0 else (side + 1) // 2  # 3x3, padding 1, stride 2: ceil(side / 2)
            c_in = width
        pooling = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if pool == "avg" else [nn.Flatten()]
        self.features = nn.Sequential(*blocks, *pooling)
        self.head = _representation_head(c_in if pool == "avg" else c_in * side * side, dim)
        self.dim = dim
        self.side, self.blocks = side, len(widths)  # the last feature map's side, the conv blocks

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def with_feature_map(self, x: Tensor, block: int) -> tuple[Tensor, Tensor]:
        """The output of conv block ``block`` (0-based; Deep InfoMax's low-level map M) and the representation y."""
        if not 0 <= block < self.blocks:
            raise ConfigError(f"feature-map block must be in [0, {self.blocks - 1}], got {block}")
        feature_map = self.features[: block + 1](x)
        return feature_map, self.head(self.features[block + 1 :](feature_map))


ENCODERS = ("convnet", "resnet20", "resnet18")


def build_encoder(
    name: str,
    in_channels: int,
    dim: int,
    image_size: int = 28,
    widths: tuple[int, ...] | list[int] = (32, 64, 128),
    pool: str = "flatten",
) -> nn.Module:
    """An encoder by name: ``convnet`` (``widths``, ``pool`` and ``image_size`` apply),
    ``resnet20`` (``widths`` apply: its three stages) or ``resnet18``.

    ``encoder_arch(...)`` returns these arguments as a dict, stored with the weights so
    ``build_encoder(**arch)`` rebuilds the same network.
    """
    if name == "convnet":
        return ConvNetEncoder(in_channels, dim, tuple(widths), pool, image_size)
    if name == "resnet20":
        return ResNet20Encoder(in_channels, dim, tuple(widths))
    if name == "resnet18":
        return ResNet18Encoder(in_channels, dim)
    raise ConfigError(f"unknown encoder {name!r}; known encoders: {', '.join(ENCODERS)}")


def encoder_arch(
    name: str,
    in_channels: int,
    dim: int,
    image_size: int,
    widths: tuple[int, ...] | list[int],
    pool: str,
) -> dict:
    """The arguments of ``build_encoder`` as a plain dict (JSON- and torch.save-friendly)."""
    return {
        "name": name,
        "in_channels": in_channels,
        "dim": dim,
        "image_size": image_size,
        "widths": list(widths),
        "pool": pool,
    }


class RandomFeatureCNN(nn.Module):
    """The exercise's footnote network for Laplacian eigenmaps: four 3x3 conv layers with
    ReLU (the last three halving the resolution) and a fully-connected layer to
    ``out_dim`` (1024). It is used untrained: a seeded random projection that keeps the
    images' spatial structure, before a kNN graph is built on its outputs."""

    def __init__(self, in_channels: int, image_size: int, out_dim: int = 1024, widths=(32, 64, 64, 128)) -> None:
        super().__init__()
        layers, c_in, side = [], in_channels, image_size
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, width, kernel_size=3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            side = side if stride == 1 else (side + 1) // 2
            c_in = width
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
