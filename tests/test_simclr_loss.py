"""NT-Xent against a direct loop over the slides' Algorithm 1, its invariances, a value
known in closed form, and a short optimisation in which it must fall."""

from __future__ import annotations

import math

import pytest
import torch

from lfr_report.ssl import SimCLRLoss, nt_xent_loss


def reference_nt_xent(z_a, z_b, tau):
    """Algorithm 1 of the CS 725 slides with interleaved views (z_{2k-1}, z_{2k}), plain Python."""
    n = len(z_a)
    z = [None] * (2 * n)
    for k in range(n):
        z[2 * k], z[2 * k + 1] = z_a[k], z_b[k]  # 0-based: views 2k and 2k+1 are one image's

    def s(i, j):
        dot = sum(a * b for a, b in zip(z[i], z[j], strict=True))
        return dot / (math.sqrt(sum(a * a for a in z[i])) * math.sqrt(sum(b * b for b in z[j])))

    def ell(i, j):
        denominator = sum(math.exp(s(i, k) / tau) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s(i, j) / tau) / denominator)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize(("n", "d", "tau"), [(2, 3, 0.5), (5, 4, 0.1), (8, 16, 1.0), (16, 32, 0.07)])
def test_matches_the_slides_algorithm_written_as_loops(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z_a = torch.randn(n, d, generator=g, dtype=torch.float64)
    z_b = z_a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    expected = reference_nt_xent(z_a.tolist(), z_b.tolist(), tau)
    assert nt_xent_loss(z_a, z_b, tau).loss.item() == pytest.approx(expected, rel=1e-10)


def test_closed_form_when_every_projection_is_the_same():
    """All similarities 1: each view's positive is one of 2N - 1 equal terms, so L = log(2N - 1)."""
    z = torch.ones(6, 4)
    terms = nt_xent_loss(z, z, temperature=0.3)
    assert terms.loss.item() == pytest.approx(math.log(11), rel=1e-6)
    assert terms.positive_similarity.item() == pytest.approx(1.0)


def test_invariant_to_the_scale_of_each_projection_and_to_the_order_of_images():
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    base = nt_xent_loss(z_a, z_b).loss
    scales = torch.rand(7, 1, generator=g) * 10 + 0.1
    torch.testing.assert_close(nt_xent_loss(z_a * scales, z_b * 3).loss, base)
    order = torch.randperm(7, generator=g)
    torch.testing.assert_close(nt_xent_loss(z_a[order], z_b[order]).loss, base)
    torch.testing.assert_close(nt_xent_loss(z_b, z_a).loss, base)  # the two views play symmetric roles


def test_loss_falls_and_views_find_their_partner_over_20_steps():
    torch.manual_seed(0)
    x = torch.randn(32, 10)
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    criterion = SimCLRLoss(temperature=0.5)
    history = []
    for _ in range(20):
        terms = criterion(net(x + 0.3 * torch.randn_like(x)), net(x + 0.3 * torch.randn_like(x)))
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        history.append((terms.loss.item(), terms.top1.item()))
    assert history[-1][0] < history[0][0] - 0.3
    assert history[-1][1] > history[0][1] and history[-1][1] >= 0.8  # top-1 among 63 candidates: chance 1.6 %


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), temperature=0)
    with pytest.raises(ValueError, match="expected two"):
        nt_xent_loss(torch.ones(1, 3), torch.ones(1, 3))


def test_the_training_loop_logs_every_simclr_term():
    from lfr_report.data import Augment, AugmentParams, load_dataset
    from lfr_report.models import Projector, build_encoder
    from lfr_report.ssl.train import fit

    torch.manual_seed(0)
    data, test = load_dataset("synthetic", "train").subset(128), load_dataset("synthetic", "test").subset(64)
    augment = Augment(AugmentParams(), data.spec.mean, data.spec.std)
    encoder, projector = build_encoder("convnet", 1, 8, widths=(4, 8)), Projector(8, 16)
    logged = []
    fit(encoder=encoder, projector=projector, objective=SimCLRLoss(), optimizer=torch.optim.Adam(
            [*encoder.parameters(), *projector.parameters()], lr=1e-3),
        make_views=lambda batch, index, g: (augment(batch, g), augment(batch, g)), train_images=data.images,
        test_images=test.images, epochs=1, batch_size=32, device=torch.device("cpu"),
        log=lambda name, value, step: logged.append(name), generator=torch.Generator().manual_seed(0),
        progress=False)  # fmt: skip
    assert {
        f"{split}_{term}" for split in ("train", "test") for term in ("loss", "positive_similarity", "top1")
    } == set(logged)
