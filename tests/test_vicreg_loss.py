"""The VICReg loss against hand-computed values, a direct loop implementation, its
invariances, and a short optimisation in which it must fall."""

from __future__ import annotations

import math

import pytest
import torch

from lfr_report.ssl import VICRegLoss, covariance_loss, invariance_loss, variance_loss, vicreg_loss


def reference_vicreg(z_a, z_b, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """Equations 2-6 of the exercise as plain loops over nested lists (no torch)."""
    b, d = len(z_a), len(z_a[0])
    inv = sum(sum((z_a[i][j] - z_b[i][j]) ** 2 for j in range(d)) / d for i in range(b)) / b

    def var(z):
        total = 0.0
        for j in range(d):
            mean = sum(z[i][j] for i in range(b)) / b
            variance = sum((z[i][j] - mean) ** 2 for i in range(b)) / (b - 1)
            total += max(0.0, gamma - math.sqrt(variance + eps))
        return total / d

    def cov(z):
        means = [sum(z[i][j] for i in range(b)) / b for j in range(d)]
        total = 0.0
        for p in range(d):
            for q in range(d):
                if p != q:
                    c = sum((z[i][p] - means[p]) * (z[i][q] - means[q]) for i in range(b)) / (b - 1)
                    total += c**2
        return total / d

    v = var(z_a) + var(z_b)
    c = cov(z_a) + cov(z_b)
    return lam * inv + mu * v + nu * c, inv, v, c


def test_terms_match_values_computed_by_hand():
    # Two perfectly correlated dimensions: centred values -1.5, -0.5, 0.5, 1.5 in both.
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    shifted = z + torch.tensor([1.0, 0.0], dtype=torch.float64)
    # Invariance: every sample differs by (1, 0): MSE = (1 + 0) / 2.
    assert invariance_loss(z, shifted).item() == pytest.approx(0.5)
    # Variance: unbiased var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, std > 1, so no hinge.
    assert variance_loss(z).item() == 0.0
    # Covariance: C = [[5/3, 5/3], [5/3, 5/3]]; off-diagonal squares 2 * 25/9, divided by d = 2.
    assert covariance_loss(z).item() == pytest.approx(25 / 9)
    terms = vicreg_loss(z, shifted)
    assert terms.invariance.item() == pytest.approx(0.5)
    assert terms.covariance.item() == pytest.approx(50 / 9)  # both branches summed (eq. 6)
    assert terms.loss.item() == pytest.approx(25 * 0.5 + 25 * 0 + 1 * 50 / 9)


def test_variance_hinge_by_hand():
    # Each dimension takes 0 and 0.5 twice: unbiased variance 4 * 0.25**2 / 3 = 1/12; uncorrelated.
    z = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]], dtype=torch.float64)
    expected = 1 - math.sqrt(1 / 12 + 1e-4)
    assert variance_loss(z).item() == pytest.approx(expected)
    assert covariance_loss(z).item() == pytest.approx(0.0)
    # eq. 6 sums the two branches (no halving, unlike the paper's code): 2 * expected.
    assert vicreg_loss(z, z).variance.item() == pytest.approx(2 * expected)
    assert vicreg_loss(z, z, gamma=0.1).variance.item() == 0.0  # std 0.29 > gamma: hinge inactive


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_direct_loop_implementation(seed):
    g = torch.Generator().manual_seed(seed)
    z_a = torch.randn(9, 5, generator=g, dtype=torch.float64) * 0.7
    z_b = z_a + 0.3 * torch.randn(9, 5, generator=g, dtype=torch.float64)
    ours = vicreg_loss(z_a, z_b, lambda_=25, mu=25, nu=1)
    ref = reference_vicreg(z_a.tolist(), z_b.tolist())
    for got, want in zip(ours, ref, strict=True):
        assert float(got) == pytest.approx(float(want), rel=1e-10, abs=1e-12)


def _random_views(seed=0, b=32, d=16):
    g = torch.Generator().manual_seed(seed)
    z_a = torch.randn(b, d, generator=g, dtype=torch.float64)
    return z_a, z_a + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)


def _all_terms(z_a, z_b):
    return torch.stack(list(vicreg_loss(z_a, z_b)))


def test_invariant_to_batch_order():
    z_a, z_b = _random_views()
    order = torch.randperm(len(z_a), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_all_terms(z_a[order], z_b[order]), _all_terms(z_a, z_b))


def test_symmetric_in_the_two_views():
    z_a, z_b = _random_views()
    torch.testing.assert_close(_all_terms(z_b, z_a), _all_terms(z_a, z_b))


def test_invariant_to_a_shared_translation():
    z_a, z_b = _random_views()
    shift = torch.linspace(-3, 3, z_a.shape[1], dtype=torch.float64)
    torch.testing.assert_close(_all_terms(z_a + shift, z_b + shift), _all_terms(z_a, z_b))


def test_invariant_to_permuting_dimensions():
    z_a, z_b = _random_views()
    dims = torch.randperm(z_a.shape[1], generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(_all_terms(z_a[:, dims], z_b[:, dims]), _all_terms(z_a, z_b))


def test_weights_scale_their_terms_only():
    z_a, z_b = _random_views()
    base = vicreg_loss(z_a, z_b, 1.0, 0.0, 0.0)
    assert base.loss.item() == pytest.approx(base.invariance.item())
    no_variance = vicreg_loss(z_a, z_b, 25.0, 0.0, 1.0)
    assert no_variance.loss.item() == pytest.approx(25 * base.invariance.item() + base.covariance.item())


def test_collapse_is_penalised():
    collapsed = torch.ones(16, 8)
    terms = vicreg_loss(collapsed, collapsed)
    assert terms.invariance.item() == 0.0
    assert terms.variance.item() == pytest.approx(2 * (1 - math.sqrt(1e-4)), rel=1e-5)  # std 0 in every dimension


def test_rejects_mismatched_or_single_sample_batches():
    with pytest.raises(ValueError):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        vicreg_loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_module_holds_the_weights():
    z_a, z_b = _random_views()
    module = VICRegLoss(lambda_=2.0, mu=3.0, nu=4.0)
    torch.testing.assert_close(
        torch.stack(list(module(z_a, z_b))), torch.stack(list(vicreg_loss(z_a, z_b, 2.0, 3.0, 4.0)))
    )
    assert "mu=3.0" in repr(module)


def test_loss_falls_over_20_steps():
    """A small encoder trained on two noisy views of the same inputs lowers the loss."""
    torch.manual_seed(0)
    data = torch.randn(128, 20)
    encoder = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        view_a = data + 0.1 * torch.randn_like(data)
        view_b = data + 0.1 * torch.randn_like(data)
        loss = vicreg_loss(encoder(view_a), encoder(view_b)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(math.isfinite(x) for x in losses)
