"""Deep InfoMax (Hjelm et al., ICLR 2019), as the lfr2024 seed's second example report uses it.

An encoder maps an image x to a low-level feature map M (C x M x M, a middle layer) and
a high-level representation y (the last layer). DIM maximises lower bounds on the mutual
information between y and M, and matches y's distribution to a prior:

* **Jensen-Shannon MI estimator** (the paper's eq. 4, the softplus form): for a critic
  T scoring pairs, ``I_JSD = E_P[-sp(-T(M, y))] - E_{PxP}[sp(T(M', y))]`` with
  ``sp(z) = log(1 + e^z)``; positive pairs (M, y) come from one image, negative ones
  (M', y) from two different images of the batch.
* **global** MI: T scores the whole feature map against y. The critic here is
  "encode and dot product": ``T(M, y) = <phi(M), psi(y)>`` with phi a small
  convolution-and-linear network and psi a linear map, so a batch of B gives a B x B
  score matrix whose diagonal holds the positives.
* **local** MI: the same estimator between y and each location of M, averaged over the
  locations: ``T(M_l, y) = <phi_l(M)_l, psi_l(y)>`` with phi_l a 1x1 convolution, a
  B x B x L score tensor.
* **prior matching**: a discriminator D tells samples v of a uniform prior on [0, 1]^d
  from the representation squashed by a sigmoid (the critics see y itself); ``V = E_v[log D(v)] + E_y[log(1 - D(y))]
  = E[-sp(-D(v))] - E[sp(D(y))]``, maximised by D and minimised by the encoder.

The encoder's objective (to minimise) is ``-alpha I_global - beta I_local + gamma V``
with the example's alpha = 0.5, beta = 1, gamma = 0.1; the discriminator minimises ``-V``.
The functions are pure (scores in, terms out) so tests can check them against loops; the
critics and the discriminator are small modules below.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TERMS = ("global_mi", "local_mi", "prior")  # logged as train_<term> per batch, test_<term> per epoch


def jsd_mi(scores: Tensor) -> Tensor:
    """The JSD lower bound from a (B, B, ...) score tensor whose [i, i, ...] entries are the
    positive pairs and [i, j, ...], i != j, the negative ones: ``E_pos[-sp(-s)] - E_neg[sp(s)]``."""
    b = scores.shape[0]
    if scores.shape[1] != b or b < 2:
        raise ValueError(f"expected (B >= 2, B, ...) scores, got {tuple(scores.shape)}")
    eye = torch.eye(b, dtype=torch.bool, device=scores.device).view(b, b, *([1] * (scores.dim() - 2)))
    positive = eye.expand_as(scores)
    return (-F.softplus(-scores[positive])).mean() - F.softplus(scores[~positive]).mean()


def prior_value(on_prior: Tensor, on_representation: Tensor) -> Tensor:
    """``V = E[-sp(-D(v))] - E[sp(D(y))]`` from the discriminator's logits on prior samples v
    and on representations y; at best -2 log 2 for a discriminator that cannot tell them apart."""
    return (-F.softplus(-on_prior)).mean() - F.softplus(on_representation).mean()


class DIMTerms(NamedTuple):
    """The encoder's weighted objective and its three unweighted terms."""

    loss: Tensor
    global_mi: Tensor
    local_mi: Tensor
    prior: Tensor


def dim_objective(global_mi: Tensor, local_mi: Tensor, prior: Tensor, alpha: float = 0.5, beta: float = 1.0,
                  gamma: float = 0.1) -> DIMTerms:  # fmt: skip
    """``-alpha I_global - beta I_local + gamma V``, with the terms kept for logging."""
    return DIMTerms(-alpha * global_mi - beta * local_mi + gamma * prior, global_mi, local_mi, prior)


class GlobalCritic(nn.Module):
    """``T(M, y) = <phi(M), psi(y)>`` for every pair of a batch: a (B, B) score matrix, [i, j] = T(M_j, y_i)."""

    def __init__(self, channels: int, side: int, dim: int, width: int = 512) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Conv2d(channels, 64, 3), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(64 * (side - 2) ** 2, width))  # fmt: skip
        self.psi = nn.Linear(dim, width)

    def forward(self, feature_map: Tensor, y: Tensor) -> Tensor:
        return self.psi(y) @ self.phi(feature_map).T


class LocalCritic(nn.Module):
    """``T(M_l, y) = <phi(M)_l, psi(y)>`` at every location l: a (B, B, L) score tensor, [i, j, l] = T(M_j,l, y_i)."""

    def __init__(self, channels: int, dim: int, width: int = 512) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Conv2d(channels, width, 1), nn.ReLU(), nn.Conv2d(width, width, 1))
        self.psi = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, feature_map: Tensor, y: Tensor) -> Tensor:
        locations = self.phi(feature_map).flatten(2)  # (B, width, L)
        return torch.einsum("iw,jwl->ijl", self.psi(y), locations)


class PriorDiscriminator(nn.Module):
    """D(v): the logit that v came from the uniform prior rather than from the encoder (the paper's 1000-200 MLP)."""

    def __init__(self, dim: int, widths: tuple[int, ...] = (1000, 200)) -> None:
        super().__init__()
        layers, width = [], dim
        for w in widths:
            layers += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v).squeeze(1)
