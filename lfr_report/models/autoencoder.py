"""The convolutional autoencoder of Problem Set 7, Problem 7.1.

Every convolution has kernel 4x4, stride 2 and padding 1, so each encoder layer halves
the resolution and each decoder layer (a transposed convolution) doubles it; the input
side must therefore be a multiple of 2^layers (32 for three layers). The representation
is the encoder's last feature map, flattened (for widths 12, 24, 48 and 32x32 inputs,
48 x 4 x 4 = 768 numbers): the "bottleneck" the linear classifiers are trained on.
"""

from __future__ import annotations

from torch import Tensor, nn

from lfr_report.errors import ConfigError


class ConvEncoder(nn.Module):
    """Conv(4, 2, 1) + ReLU per width; output flattened. ``dim`` is the representation size."""

    def __init__(self, in_channels: int, image_size: int, widths: tuple[int, ...] = (12, 24, 48)) -> None:
        super().__init__()
        if not widths or image_size % 2 ** len(widths):
            raise ConfigError(f"image_size {image_size} must be a multiple of 2^{len(widths)} for {len(widths)} layers")
        layers: list[nn.Module] = []
        c_in = in_channels
        for width in widths:
            layers += [nn.Conv2d(c_in, width, kernel_size=4, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.map_shape = (c_in, image_size // 2 ** len(widths), image_size // 2 ** len(widths))
        self.dim = c_in * self.map_shape[1] * self.map_shape[2]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)


class ConvDecoder(nn.Module):
    """The encoder mirrored: ConvTranspose(4, 2, 1) + ReLU per width, a sigmoid at the end
    (images are in [0, 1])."""

    def __init__(self, out_channels: int, map_shape: tuple[int, int, int], widths: tuple[int, ...] = (12, 24, 48)):
        super().__init__()
        layers: list[nn.Module] = []
        outs = [*reversed(widths[:-1]), out_channels]
        c_in = widths[-1]
        for i, c_out in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            layers.append(nn.Sigmoid() if i == len(outs) - 1 else nn.ReLU(inplace=True))
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.map_shape = map_shape

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y.view(len(y), *self.map_shape))


class ConvAutoencoder(nn.Module):
    """``decoder(encoder(x))``; ``encoder`` alone is what the classifiers use."""

    def __init__(self, in_channels: int, image_size: int, widths: tuple[int, ...] = (12, 24, 48)) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_channels, image_size, tuple(widths))
        self.decoder = ConvDecoder(in_channels, self.encoder.map_shape, tuple(widths))

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
