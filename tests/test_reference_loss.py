"""Our VICReg loss against the reference library's (lightly 1.6.0), on identical inputs.

The documented scaling difference, and the only one: the exercise's eq. 6 *sums* the
variance terms of the two branches, lightly (like the VICReg authors' code) averages
them. So term by term

* invariance: equal;
* variance: ours = ``variance_loss(z_a) + variance_loss(z_b)`` = 2 x lightly's ``var_loss``;
* covariance: equal (both sum the two branches);

and in total ``ours(lambda, mu, nu) == lightly(lambda, 2 mu, nu)``. Both use the
unbiased (B - 1) variance and covariance, the same eps inside the square root and
gamma = 1 (lightly's is fixed at 1).
"""

from __future__ import annotations

import lightly.loss.vicreg_loss as lightly_vicreg  # the reference: a pinned dev dependency (make setup)
import pytest
import torch

from lfr_report.ssl import covariance_loss, invariance_loss, variance_loss, vicreg_loss

CASES = [(2, 3), (8, 16), (64, 128), (256, 512)]  # (batch, projection dim)


def projections(b: int, d: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_a = torch.randn(b, d, generator=g, dtype=torch.float64) * scale
    return z_a, z_a + 0.3 * torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("b", "d"), CASES)
@pytest.mark.parametrize("scale", [0.05, 1.0, 3.0])  # collapsed, unit and wide: the hinge active, partly, not
def test_terms_match_lightly_up_to_the_documented_factor(b: int, d: int, scale: float) -> None:
    z_a, z_b = projections(b, d, seed=b * d, scale=scale)
    torch.testing.assert_close(invariance_loss(z_a, z_b), lightly_vicreg.invariance_loss(z_a, z_b))
    ours_var = variance_loss(z_a) + variance_loss(z_b)
    lightly_var = 0.5 * (lightly_vicreg.variance_loss(z_a) + lightly_vicreg.variance_loss(z_b))
    torch.testing.assert_close(ours_var, 2 * lightly_var)
    ours_cov = covariance_loss(z_a) + covariance_loss(z_b)
    torch.testing.assert_close(ours_cov, lightly_vicreg.covariance_loss(z_a) + lightly_vicreg.covariance_loss(z_b))


@pytest.mark.parametrize(("lam", "mu", "nu"), [(25.0, 25.0, 1.0), (1.0, 0.0, 1.0), (5.0, 3.0, 0.5)])
def test_total_and_gradients_equal_lightly_with_mu_doubled(lam: float, mu: float, nu: float) -> None:
    z_a, z_b = projections(32, 64, seed=7)
    ours_a, ours_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    ref_a, ref_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    ours = vicreg_loss(ours_a, ours_b, lam, mu, nu).loss
    reference = lightly_vicreg.VICRegLoss(lambda_param=lam, mu_param=2 * mu, nu_param=nu)(ref_a, ref_b)
    torch.testing.assert_close(ours, reference)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours_a.grad, ref_a.grad)
    torch.testing.assert_close(ours_b.grad, ref_b.grad)


def test_with_the_same_mu_the_totals_differ_by_half_the_variance_term() -> None:
    """The difference is real, not an artefact of the test: at the exercise's weights
    lightly's total is ours minus mu/2 times our variance term."""
    z_a, z_b = projections(16, 32, seed=3, scale=0.2)  # collapsed enough that the hinge is active
    ours = vicreg_loss(z_a, z_b)
    reference = lightly_vicreg.VICRegLoss()(z_a, z_b)
    assert ours.variance > 0.5
    torch.testing.assert_close(reference, ours.loss - 25.0 / 2 * ours.variance)
