"""The SimCLR objective: NT-Xent, exactly as Algorithm 1 of the CS 725 slides writes it.

For a batch of N images, two views each give 2N projections z_1 .. z_2N, where z_k and
its partner p(k) are the two views of one image. With cosine similarities
``s_ij = z_i^T z_j / (||z_i|| ||z_j||)`` and temperature tau,

    l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )
    L       = 1/(2N) sum_{k=1}^{N} [ l(2k-1, 2k) + l(2k, 2k-1) ]

so each view's denominator runs over the other 2N - 1 views (its positive included) and
every view serves once as the anchor. Here the views are ordered as
``cat(z_a, z_b)`` rather than interleaved; the sum is the same. ``nt_xent_loss`` is a pure
function; ``SimCLRLoss`` is a thin module holding tau, returning terms the training loop
logs like VICReg's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report import distributed


class SimCLRTerms(NamedTuple):
    """The loss and two diagnostics (no gradient needed from them)."""

    loss: Tensor
    positive_similarity: Tensor  # mean cosine similarity of the two views of an image
    top1: Tensor  # fraction of views whose most similar other view is their own partner


def nt_xent_loss(z_a: Tensor, z_b: Tensor, temperature: float = 0.5, global_batch: bool = False) -> SimCLRTerms:
    """NT-Xent of two (N, d) batches of projections, row i of ``z_a`` and of ``z_b`` being
    the two views of image i; see the module docstring.

    ``global_batch`` (under torchrun): ``z_a``, ``z_b`` are this rank's share of the batch;
    its views are the anchors and every rank's views are the candidates (the negatives of
    the global batch, ``distributed.gather_batch``), so the mean over the ranks is the
    global batch's loss."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"expected two (N, d) projections of one shape, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(z_a)
    start = distributed.rank() * n if global_batch else 0
    if global_batch:
        z_a, z_b = distributed.gather_batch(z_a), distributed.gather_batch(z_b)
    total = len(z_a)
    if total < 2:
        raise ValueError(f"expected two (N >= 2, d) projections, got a batch of {total}")
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    own = torch.arange(start, start + n, device=z.device)
    anchors = torch.cat([own, own + total])  # this rank's views, as rows of z
    partner = torch.cat([own + total, own])
    rows = torch.arange(2 * n, device=z.device)
    similarity = z[anchors] @ z.T
    itself = torch.zeros_like(similarity, dtype=torch.bool)
    itself[rows, anchors] = True
    logits = (similarity / temperature).masked_fill(itself, float("-inf"))
    loss = F.cross_entropy(logits, partner)
    with torch.no_grad():
        positive = similarity[rows, partner].mean()
        top1 = (logits.argmax(dim=1) == partner).float().mean()
    return SimCLRTerms(loss, positive, top1)


class SimCLRLoss(nn.Module):
    """Holds tau; ``forward(z_a, z_b)`` returns ``SimCLRTerms``."""

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, z_a: Tensor, z_b: Tensor, global_batch: bool = False) -> SimCLRTerms:
        return nt_xent_loss(z_a, z_b, self.temperature, global_batch)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
