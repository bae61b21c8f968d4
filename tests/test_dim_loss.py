"""Deep InfoMax's terms against the estimator written as loops, and the objective falling over 20 steps."""

from __future__ import annotations

import math

import pytest
import torch

from lfr_report.ssl.dim import (
    GlobalCritic,
    LocalCritic,
    PriorDiscriminator,
    dim_objective,
    jsd_mi,
    prior_value,
)


def softplus(z: float) -> float:
    return math.log1p(math.exp(z))


def jsd_by_loops(scores: torch.Tensor) -> float:
    """E_pos[-sp(-s)] - E_neg[sp(s)], one pair at a time."""
    b = scores.shape[0]
    flat = scores.reshape(b, b, -1)
    positive, negative = [], []
    for i in range(b):
        for j in range(b):
            for value in flat[i, j].tolist():
                (positive if i == j else negative).append(value)
    return sum(-softplus(-s) for s in positive) / len(positive) - sum(softplus(s) for s in negative) / len(negative)


@pytest.mark.parametrize("shape", [(4, 4), (3, 3, 5), (2, 2, 7)])
def test_jsd_estimator_equals_the_loop(shape):
    scores = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    assert jsd_mi(scores).item() == pytest.approx(jsd_by_loops(scores), rel=1e-12)


def test_jsd_is_near_its_bounds_for_perfect_and_useless_critics():
    b = 8
    perfect = torch.full((b, b), -30.0) + torch.eye(b) * 60  # positives +30, negatives -30
    assert jsd_mi(perfect).item() == pytest.approx(0.0, abs=1e-9)  # the bound's supremum
    assert jsd_mi(torch.zeros(b, b)).item() == pytest.approx(-2 * math.log(2))  # a critic that cannot tell: -2 log 2
    with pytest.raises(ValueError, match="expected"):
        jsd_mi(torch.zeros(3, 4))


def test_prior_value_equals_the_loop_and_its_chance_level():
    real, fake = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.5, 0.0])
    loop = (
        sum(math.log(torch.sigmoid(torch.tensor(r)).item()) for r in real.tolist()) / 3
        + sum(math.log(1 - torch.sigmoid(torch.tensor(f)).item()) for f in fake.tolist()) / 2
    )  # E[log D(v)] + E[log(1 - D(y))]
    assert prior_value(real, fake).item() == pytest.approx(loop, rel=1e-6)
    assert prior_value(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(-2 * math.log(2))


def test_objective_weights_the_terms_and_keeps_them():
    terms = dim_objective(torch.tensor(-1.0), torch.tensor(-0.5), torch.tensor(-1.3), alpha=0.5, beta=1.0, gamma=0.1)
    assert terms.loss.item() == pytest.approx(0.5 + 0.5 - 0.13)
    assert (terms.global_mi.item(), terms.local_mi.item(), terms.prior.item()) == pytest.approx((-1.0, -0.5, -1.3))


def test_critic_scores_pair_every_map_with_every_representation():
    g = torch.Generator().manual_seed(0)
    maps, y = torch.randn(5, 8, 6, 6, generator=g), torch.randn(5, 16, generator=g)
    local = LocalCritic(8, 16, width=12)
    scores = local(maps, y)
    assert scores.shape == (5, 5, 36)
    direct = (local.psi(y[2]) * local.phi(maps[3:4])[0, :, 1, 4]).sum()  # T(M_3 at row 1, column 4; y_2)
    assert scores[2, 3, 1 * 6 + 4].item() == pytest.approx(direct.item(), rel=1e-5)
    glob = GlobalCritic(8, 6, 16, width=12)
    assert glob(maps, y).shape == (5, 5)
    assert glob(maps, y)[1, 4].item() == pytest.approx((glob.psi(y[1]) * glob.phi(maps[4:5])[0]).sum().item(), rel=1e-5)
    assert PriorDiscriminator(16, (10,))(y).shape == (5,)


def test_dim_objective_falls_over_20_steps():
    torch.manual_seed(0)
    encoder_low = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    encoder_high = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16))
    critics = torch.nn.ModuleList([GlobalCritic(8, 4, 16, 32), LocalCritic(8, 16, 32)])
    discriminator = PriorDiscriminator(16, (32,))
    params = [*encoder_low.parameters(), *encoder_high.parameters(), *critics.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    coarse = torch.rand(32, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    images = torch.nn.functional.interpolate(coarse, size=8)  # blocky images: every location tells its image
    losses = []
    for _ in range(20):
        maps = encoder_low(images)
        y = encoder_high(maps)  # the critics see y; the prior discriminator sees sigmoid(y), in [0, 1]
        prior = prior_value(discriminator(torch.rand_like(y)), discriminator(torch.sigmoid(y)))
        terms = dim_objective(jsd_mi(critics[0](maps, y)), jsd_mi(critics[1](maps, y)), prior)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        d_loss = -prior_value(discriminator(torch.rand_like(y)), discriminator(torch.sigmoid(y).detach()))
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        losses.append(terms.loss.item())
        assert all(torch.isfinite(t) for t in terms)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
