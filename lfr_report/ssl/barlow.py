"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction").

For projections Z_a, Z_b (N x d) of two views of a batch, each dimension is standardised
over the batch, ``ẑ^j = (z^j - mean_n z^j_n) / sqrt(var_n z^j_n + eps)`` with the biased
(population, 1/N) variance, and the cross-correlation of the two views is

    C_ij = 1/N sum_n ẑ_a,n,i ẑ_b,n,j        (d x d; each entry in [-1, 1] when eps = 0)

The loss (eq. 1) pulls C to the identity:

    L = sum_i (1 - C_ii)^2  +  lambda sum_i sum_{j != i} C_ij^2

(the invariance and redundancy-reduction terms), lambda = 5e-3 in the paper.

The standardisation is the paper's official code's (``BatchNorm1d(affine=False)`` in
training mode: biased variance, eps = 1e-5 inside the square root); Algorithm 1 of the paper
writes ``z.std(0)``, which in PyTorch is the unbiased estimate and has no eps. The terms are
sums over the d x d matrix, not means, so they grow with d (the paper's lambda is for
d = 8192).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

EPS = 1e-5  # added to each dimension's variance before its square root, as BatchNorm's default


class BarlowTerms(NamedTuple):
    """The weighted total and its two unweighted terms."""

    loss: Tensor  # on_diagonal + lambd * off_diagonal
    on_diagonal: Tensor  # sum_i (1 - C_ii)^2, the invariance term
    off_diagonal: Tensor  # sum_{i != j} C_ij^2, the redundancy-reduction term


def standardise(z: Tensor, eps: float = EPS) -> Tensor:
    """Each column of ``z`` (N, d) less its batch mean, over ``sqrt(biased variance + eps)``."""
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0) + eps)


def cross_correlation(z_a: Tensor, z_b: Tensor, eps: float = EPS) -> Tensor:
    """C = standardise(z_a)^T standardise(z_b) / N, the (d, d) cross-correlation of the two views."""
    return standardise(z_a, eps).T @ standardise(z_b, eps) / z_a.shape[0]


def barlow_twins_loss(z_a: Tensor, z_b: Tensor, lambd: float = 5e-3) -> BarlowTerms:
    """Eq. 1 of the paper for two (N, d) batches of projections, row n of ``z_a`` and of
    ``z_b`` being the two views of image n; see the module docstring."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"expected two (N, d) projections of one shape, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    if z_a.shape[0] < 2:
        raise ValueError(f"expected two (N >= 2, d) projections, got a batch of {z_a.shape[0]}")
    c = cross_correlation(z_a, z_b)
    diagonal = c.diagonal()
    on = (1 - diagonal).pow(2).sum()
    itself = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    off = c.pow(2).masked_fill(itself, 0.0).sum()  # not the full sum less the diagonal's: no cancellation
    return BarlowTerms(on + lambd * off, on, off)
