"""Heads that sit on top of an encoder during pretraining and are dropped afterwards."""

from __future__ import annotations

from torch import Tensor, nn


class Projector(nn.Module):
    """The VICReg expander h: ``Linear-BN-ReLU, Linear-BN-ReLU, Linear``, all of width ``dim``.

    This is the projection head of the course's additional files (3 FC layers of
    width 512 for the exercise).
    """

    def __init__(self, in_dim: int, dim: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, dim),
            nn.BatchNorm1d(dim),
            nn.ReLU(inplace=True),
            nn.Linear(dim, dim),
            nn.BatchNorm1d(dim),
            nn.ReLU(inplace=True),
            nn.Linear(dim, dim),
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y)
