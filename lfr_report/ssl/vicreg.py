"""The VICReg objective, exactly as the course's exercise (acml-ex3, section 2.1) writes it.

For projections Z = (z_1 .. z_B) and Z' of two views of a batch, each z_i in R^d:

* invariance (eq. 2): ``L_inv(Z, Z') = 1/B sum_i MSE(z_i, z'_i)`` with
  ``MSE(z_i, z'_i) = 1/d ||z_i - z'_i||^2``, i.e. the mean of all squared differences;
* variance (eq. 3): ``L_var(Z) = 1/d sum_j max(0, gamma - sigma_j)`` with
  ``sigma_j = sqrt(Var(z^j_1 .. z^j_B) + eps)``; Var is the unbiased (B - 1) estimate,
  matching the covariance's normalisation;
* covariance (eqs. 4-5): ``C(Z) = 1/(B-1) sum_i (z_i - zbar)(z_i - zbar)^T`` and
  ``L_cov(Z) = 1/d sum_{i != j} C(Z)_ij^2``;
* total (eq. 6): ``lambda L_inv + mu [L_var(Z) + L_var(Z')] + nu [L_cov(Z) + L_cov(Z')]``.

Note on scaling: eq. 6 *sums* the variance terms of the two branches. The VICReg
paper's code (and lightly's ``VICRegLoss``) average them, i.e. halve the variance
term, while they sum the covariance terms as we do. So with the same lambda, mu, nu,
our ``variance`` term is twice lightly's. We follow the assignment.

The functions are pure (tensors in, tensor out) so they also serve as inner losses in
bilevel problems; ``VICRegLoss`` is a thin module holding the weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report import distributed


def invariance_loss(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Eq. 2: mean over the batch of the per-sample MSE between the two projections."""
    return F.mse_loss(z_a, z_b)


def variance_loss(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Eq. 3: mean over dimensions of the hinge ``max(0, gamma - sqrt(Var + eps))``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Eq. 5: sum of squared off-diagonal entries of the covariance (eq. 4), divided by d."""
    b, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (b - 1)
    off_diagonal = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return off_diagonal / d


class VICRegTerms(NamedTuple):
    """The weighted total and its three unweighted terms (each summed over both branches)."""

    loss: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor


TERMS = VICRegTerms._fields[1:]  # the three terms the training loop logs beside the total (train_<term>, test_<term>)


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    lambda_: float = 25.0,
    mu: float = 25.0,
    nu: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    global_batch: bool = False,
) -> VICRegTerms:
    """Eq. 6, returning the total and the terms ``L_inv``, ``L_var(Z) + L_var(Z')``, ``L_cov(Z) + L_cov(Z')``.

    ``global_batch`` (under torchrun): ``z_a``, ``z_b`` are this rank's share of the batch;
    the variance and covariance are those of all ranks' projections together
    (``distributed.gather_batch``), the invariance is this rank's own pairs' (its mean over
    the ranks is the global batch's, and DDP's gradient averaging makes it so)."""
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"expected two (B, d) projections of one shape, got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
    inv = invariance_loss(z_a, z_b)
    if global_batch:
        z_a, z_b = distributed.gather_batch(z_a), distributed.gather_batch(z_b)
    if z_a.shape[0] < 2:
        raise ValueError(f"expected two (B >= 2, d) projections, got a batch of {z_a.shape[0]}")
    var = variance_loss(z_a, gamma, eps) + variance_loss(z_b, gamma, eps)
    cov = covariance_loss(z_a) + covariance_loss(z_b)
    return VICRegTerms(lambda_ * inv + mu * var + nu * cov, inv, var, cov)


class VICRegLoss(nn.Module):
    """Holds the weights of eq. 6; ``forward(z_a, z_b)`` returns ``VICRegTerms``.

    Defaults are the exercise's: lambda = mu = 25, nu = 1, gamma = 1, eps = 1e-4.
    """

    def __init__(
        self,
        lambda_: float = 25.0,
        mu: float = 25.0,
        nu: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.lambda_, self.mu, self.nu, self.gamma, self.eps = lambda_, mu, nu, gamma, eps

    def forward(self, z_a: Tensor, z_b: Tensor, global_batch: bool = False) -> VICRegTerms:
        return vicreg_loss(z_a, z_b, self.lambda_, self.mu, self.nu, self.gamma, self.eps, global_batch)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, mu={self.mu}, nu={self.nu}, gamma={self.gamma}, eps={self.eps}"
