"""A pretrained image prior log p_psi(x) for the distilled set (the project text's suggestion:
"pre-train a prior log p_psi(x) to represent a desired image statistics and add to loss").

The prior is probabilistic PCA (Tipping & Bishop 1999) fitted to the task's real training
images: a Gaussian whose covariance keeps the ``components`` leading principal directions
of the real images and an isotropic variance in every other direction,

    C = U diag(lambda) U^T + s^2 (I - U U^T),   s^2 = mean of the d - k eigenvalues left out
    log p(x) = -1/2 [ sum_i z_i^2 / lambda_i + (||x - mu||^2 - ||z||^2) / s^2
                      + sum_i log lambda_i + (d - k) log s^2 + d log 2 pi ],   z = U^T (x - mu)

Fitting it is one eigendecomposition (the maximum-likelihood solution, no training loop),
its log density is exact and differentiable in x, and it says what "looks like the real
images" means in the simplest way that still has structure: pixels that vary together in
the real data (strokes) are cheap, everything else (noise, off-stroke grey) is expensive.
The distillation adds ``-weight * mean_n log p(d_n) / d`` to the outer loss: the mean
negative log-likelihood of D's images, per pixel, so the weight does not scale with d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianPrior:
    """Probabilistic PCA: mean ``mu`` (d,), directions ``U`` (d, k), their variances
    ``variances`` (k,) and the residual variance ``residual`` of the other d - k directions."""

    mu: Tensor
    U: Tensor
    variances: Tensor
    residual: float

    @classmethod
    def fit(cls, x: Tensor, components: int, floor: float = 1e-4) -> GaussianPrior:
        """The maximum-likelihood fit to the rows of ``x`` (N, d); variances below ``floor``
        (constant border pixels have none) are raised to it, so the density stays finite."""
        x = x.double()
        mu = x.mean(0)
        covariance = torch.cov((x - mu).T)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues = eigenvalues.flip(0).clamp_min(floor)
        k = min(components, x.shape[1] - 1)
        residual = float(eigenvalues[k:].mean())
        return cls(mu.float(), eigenvectors.flip(1)[:, :k].float(), eigenvalues[:k].float(), residual)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of each row of ``x`` (N, d), in nats."""
        d, k = self.mu.shape[0], self.U.shape[1]
        centred = x - self.mu
        z = centred @ self.U
        inside = (z.pow(2) / self.variances).sum(1)
        outside = (centred.pow(2).sum(1) - z.pow(2).sum(1)) / self.residual
        log_det = self.variances.log().sum() + (d - k) * math.log(self.residual)
        return -0.5 * (inside + outside + log_det + d * math.log(2 * math.pi))

    def nll_per_pixel(self, x: Tensor) -> Tensor:
        """The prior term: mean over the rows of -log p(x) / d."""
        return -self.log_prob(x).mean() / self.mu.shape[0]
