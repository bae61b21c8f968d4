"""The Barlow Twins loss against a loop over samples and dimensions, against lightly's
``BarlowTwinsLoss``, values known in closed form, its invariances, its errors, and a short
training in which it must fall."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import noisy_flipped_view
from lightly.loss import BarlowTwinsLoss

from lfr_report.ssl.barlow import EPS, BarlowTerms, barlow_twins_loss


def reference_barlow(z_a, z_b, lambd, eps=EPS):
    """Standardise each dimension with the batch mean and the biased variance plus eps, form
    C_ij = 1/N sum_n a_ni b_nj, and sum the terms, as loops over nested lists (no torch)."""
    n, d = len(z_a), len(z_a[0])

    def standardise(z):
        columns = []
        for j in range(d):
            mean = sum(z[i][j] for i in range(n)) / n
            variance = sum((z[i][j] - mean) ** 2 for i in range(n)) / n
            columns.append([(z[i][j] - mean) / math.sqrt(variance + eps) for i in range(n)])
        return columns  # columns[j][i]

    a, b = standardise(z_a), standardise(z_b)
    on = off = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            if i == j:
                on += (1 - c) ** 2
            else:
                off += c**2
    return on + lambd * off, on, off


@pytest.mark.parametrize(("n", "d", "lambd"), [(2, 3, 5e-3), (9, 5, 0.1), (16, 12, 1.0)])
def test_matches_the_loop_over_samples_and_dimensions(n, d, lambd):
    g = torch.Generator().manual_seed(n)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 1
    z_b = z_a + torch.randn(n, d, generator=g, dtype=torch.float64)
    terms = barlow_twins_loss(z_a, z_b, lambd)
    assert isinstance(terms, BarlowTerms) and terms._fields[0] == "loss"
    for got, want in zip(terms, reference_barlow(z_a.tolist(), z_b.tolist(), lambd), strict=True):
        assert got.item() == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("lambd", [5e-3, 0.05, 1.0])
def test_matches_lightlys_barlow_twins_loss_with_the_same_lambda(lambd):
    """lightly standardises with ``F.batch_norm`` in training mode (biased variance, eps 1e-5 inside
    the root), divides C by N and sums both terms, as the paper's code: its ``lambda_param`` is our
    ``lambd`` and its loss our ``loss``, with no rescaling."""
    g = torch.Generator().manual_seed(1)
    z_a = torch.randn(32, 20, generator=g, dtype=torch.float64) * 3
    z_b = 0.5 * z_a + torch.randn(32, 20, generator=g, dtype=torch.float64)
    expected = BarlowTwinsLoss(lambda_param=lambd)(z_a, z_b)
    torch.testing.assert_close(barlow_twins_loss(z_a, z_b, lambd).loss, expected, rtol=1e-12, atol=0)


def _decorrelated(n=8, d=7):
    """Columns 1..d of a Sylvester Hadamard matrix: entries +-1, each column of mean 0 and
    population variance 1, the columns orthogonal."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while len(h) < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[:, 1 : d + 1]


def test_zero_for_identical_standardised_views_with_decorrelated_dimensions():
    z = _decorrelated()
    terms = barlow_twins_loss(z, z)
    assert terms.off_diagonal.item() == pytest.approx(0.0, abs=1e-24)
    assert terms.on_diagonal.item() == pytest.approx(7 * (EPS / (1 + EPS)) ** 2, rel=1e-9)  # C_ii = 1 / (1 + eps)
    assert terms.loss.item() < 1e-8


def test_closed_form_for_anti_correlated_and_for_redundant_dimensions():
    z = _decorrelated()
    opposite = barlow_twins_loss(z, -z)  # C = -I / (1 + eps): each diagonal term (1 + 1)^2
    assert opposite.on_diagonal.item() == pytest.approx(7 * 4, rel=1e-4)
    assert opposite.off_diagonal.item() == pytest.approx(0.0, abs=1e-24)
    copies = torch.cat([z[:, :1]] * 3, dim=1)  # three copies of one +-1 dimension: C is all ones
    terms = barlow_twins_loss(copies, copies, lambd=0.5)
    assert terms.off_diagonal.item() == pytest.approx(6.0, rel=1e-4)
    assert terms.loss.item() == pytest.approx(terms.on_diagonal.item() + 0.5 * 6.0, rel=1e-4)


def test_invariant_to_scaling_and_shifting_each_dimension_and_to_batch_order():
    """Up to eps: a scale changes eps's share of the variance, so it is only tested for scales of
    at least 1 on variances of about 1, with a tolerance far above eps's effect."""
    g = torch.Generator().manual_seed(2)
    z_a = torch.randn(24, 10, generator=g, dtype=torch.float64)
    z_b = z_a + 0.7 * torch.randn(24, 10, generator=g, dtype=torch.float64)
    base = torch.stack(list(barlow_twins_loss(z_a, z_b)))
    scale_a, scale_b = (1 + 9 * torch.rand(10, generator=g, dtype=torch.float64) for _ in range(2))
    shift = torch.randn(10, generator=g, dtype=torch.float64) * 5
    scaled = torch.stack(list(barlow_twins_loss(z_a * scale_a + shift, z_b * scale_b - shift)))
    torch.testing.assert_close(scaled, base, rtol=1e-4, atol=1e-8)
    assert not torch.allclose(torch.stack(list(barlow_twins_loss(z_a * -scale_a, z_b))), base)  # a sign is not
    order = torch.randperm(24, generator=g)
    torch.testing.assert_close(torch.stack(list(barlow_twins_loss(z_a[order], z_b[order]))), base)
    torch.testing.assert_close(torch.stack(list(barlow_twins_loss(z_b, z_a))), base)  # C transposed


def test_lambda_weights_the_off_diagonal_term_only():
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
    base = barlow_twins_loss(z_a, z_b, 0.0)
    assert base.loss.item() == pytest.approx(base.on_diagonal.item())
    weighted = barlow_twins_loss(z_a, z_b, 2.0)
    assert weighted.loss.item() == pytest.approx(base.on_diagonal.item() + 2.0 * base.off_diagonal.item())
    assert barlow_twins_loss(z_a, z_b).loss.item() == pytest.approx(
        base.on_diagonal.item() + 5e-3 * base.off_diagonal.item()
    )  # the paper's default


def test_rejects_mismatched_or_single_sample_batches():
    with pytest.raises(ValueError, match="one shape"):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one shape"):
        barlow_twins_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="N >= 2"):
        barlow_twins_loss(torch.zeros(1, 3), torch.zeros(1, 3))


@pytest.mark.usefixtures("one_thread")
def test_loss_falls_over_20_steps():
    """The tiny ConvNet and a 32-wide projector on two noisy, randomly flipped views of a batch."""
    from lfr_report.data import load_dataset, normalise
    from lfr_report.models import Projector, build_encoder, encoder_arch

    torch.manual_seed(0)
    data = load_dataset("synthetic", "train")
    images = normalise(data.images[:64], data.spec.mean, data.spec.std)
    net = torch.nn.Sequential(build_encoder(**encoder_arch("convnet", 1, 16, 28, [8, 16], "avg")), Projector(16, 32, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def view():
        return noisy_flipped_view(images, generator)

    losses = []
    for _ in range(20):
        terms = barlow_twins_loss(net(view()), net(view()))
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        losses.append(terms.loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, losses
