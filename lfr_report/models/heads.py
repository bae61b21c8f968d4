"""Heads on top of an encoder: projection heads for pretraining (dropped afterwards) and the
classification heads of the downstream evaluations."""

from __future__ import annotations

from torch import Tensor, nn


class Projector(nn.Module):
    """A projection head of ``layers`` linear layers of width ``dim``, each but the last
    followed by BatchNorm and ReLU.

    Three layers (the default) is the VICReg expander h of the course's additional files
    (width 512 for the exercise); two is SimCLR's projection head g.
    """

    def __init__(self, in_dim: int, dim: int = 512, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers - 1):
            blocks += [nn.Linear(in_dim if i == 0 else dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)]
        blocks.append(nn.Linear(dim if layers > 1 else in_dim, dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y)


def classifier_head(in_dim: int, classes: int, layers: int = 1, hidden: int = 200) -> nn.Module:
    """A linear layer (``layers=1``), or ``layers`` fully connected layers of width ``hidden``
    with a ReLU between each: the second lfr2024 example's three-layer classification head."""
    if layers == 1:
        return nn.Linear(in_dim, classes)
    blocks: list[nn.Module] = []
    for i in range(layers - 1):
        blocks += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(inplace=True)]
    return nn.Sequential(*blocks, nn.Linear(hidden, classes))
