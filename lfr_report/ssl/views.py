"""The two views of each image that two-view objectives compare.

* ``augmented_pair``: two independent random augmentations (VICReg as published);
* ``neighbour_pair``: the image itself and one of its k nearest neighbours in a frozen
  encoder's representation space, drawn at random each step (the exercise's Q5
  ablation, "no generated neighbours"). No augmentation is applied.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lfr_report.data import Augment, normalise
from lfr_report.neighbours import knn
from lfr_report.ssl.train import ViewMaker


def augmented_pair(augment: Augment, channels_last: bool = False) -> ViewMaker:
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def make(batch: Tensor, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        view_a = augment(batch, generator).contiguous(memory_format=layout)
        view_b = augment(batch, generator).contiguous(memory_format=layout)
        return view_a, view_b

    return make


def neighbour_table(features: Tensor, k: int) -> Tensor:
    """Indices ``(N, k)`` of each item's ``k`` nearest other items (exact L2, faiss)."""
    _, ids = knn(features, features, k, exclude_self=True)
    return torch.from_numpy(ids).long()


def neighbour_pair(images: Tensor, neighbours: Tensor, augment: Augment, channels_last: bool = False) -> ViewMaker:
    """Views (image, a random one of its ``neighbours``), both only normalised.

    ``images`` is the whole set the batch indices refer to; ``neighbours`` is its
    ``neighbour_table``.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def make(batch: Tensor, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pick = torch.randint(neighbours.shape[1], (len(index),), generator=generator, device=generator.device)
        partner = neighbours[index.to(neighbours.device), pick.to(neighbours.device)]
        other = images[partner.to(images.device)].to(batch.device, non_blocking=True)
        mean, std = augment.channel_mean, augment.channel_std
        return normalise(batch, mean, std, layout), normalise(other, mean, std, layout)

    return make
