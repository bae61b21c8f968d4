"""The denoising autoencoder's decoder: the ConvNet encoder mirrored.

``ConvNetEncoder`` goes image -> conv blocks (each after the first halving the side) ->
flatten -> ``Linear(features, 512)`` -> BN -> ReLU -> ``Linear(512, dim)``. The decoder runs
the same layers backwards: ``Linear(dim, 512)`` -> BN -> ReLU -> ``Linear(512, features)``,
the last feature map, then per block an upsampling to the encoder's side at that depth
and a 3x3 conv-BN-ReLU, and a last 3x3 convolution to the image's channels with a
sigmoid (pixels in [0, 1]).
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvNetDecoder(nn.Module):
    def __init__(self, in_channels: int, dim: int, widths: tuple[int, ...] | list[int], image_size: int) -> None:
        super().__init__()
        sides = [image_size]
        for _ in widths[1:]:
            sides.append((sides[-1] + 1) // 2)  # the encoder's 3x3, stride-2, padding-1 convolutions
        self.shape = (widths[-1], sides[-1], sides[-1])
        features = widths[-1] * sides[-1] * sides[-1]
        self.head = nn.Sequential(nn.Linear(dim, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                  nn.Linear(512, features), nn.ReLU(inplace=True))  # fmt: skip
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1, 0, -1):  # back up through the blocks that halved the side
            layers += [nn.Upsample(size=sides[i - 1]), nn.Conv2d(widths[i], widths[i - 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(widths[i - 1]), nn.ReLU(inplace=True)]  # fmt: skip
        layers += [nn.Conv2d(widths[0], in_channels, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        return self.body(self.head(y).view(-1, *self.shape))
