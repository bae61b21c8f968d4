"""The distillation options of the project text: the pretrained prior on D (against a direct
Gaussian log-density) and the measured ambiguity between w and D, with D's canonical order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfr_report.distill import ambiguity
from lfr_report.distill.evaluation import retrained_accuracy
from lfr_report.distill.inner import grad_norm2, init_params
from lfr_report.distill.prior import GaussianPrior
from lfr_report.distill.solvers import Distiller, InnerSpec, Task


def _images(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Rows with structure: a few shared directions plus a little noise."""
    basis = torch.randn(3, d, generator=torch.Generator().manual_seed(99))  # the same directions for every sample
    g = torch.Generator().manual_seed(seed)
    return 0.5 + torch.randn(n, 3, generator=g) @ basis * 0.2 + 0.02 * torch.randn(n, d, generator=g)


def test_the_prior_is_the_probabilistic_pca_gaussian_written_out():
    x = _images(400)
    prior = GaussianPrior.fit(x, components=3)
    # direct reference: the full covariance C = U diag(lambda) U^T + s^2 (I - U U^T), through torch's own Gaussian
    d = x.shape[1]
    projector = prior.U @ prior.U.T
    covariance = prior.U @ torch.diag(prior.variances) @ prior.U.T + prior.residual * (torch.eye(d) - projector)
    reference = torch.distributions.MultivariateNormal(prior.mu.double(), covariance.double())
    queries = _images(20, seed=1)
    assert torch.allclose(prior.log_prob(queries).double(), reference.log_prob(queries.double()), rtol=1e-4)
    # the real images are likelier than noise of the same range, and the fit's directions carry most variance
    assert prior.log_prob(queries).mean() > prior.log_prob(torch.rand(20, d)).mean() + 50
    assert float(prior.variances.min()) > 10 * prior.residual


def test_the_prior_term_pulls_d_towards_the_real_images():
    real = _images(300)
    task = Task("toy", real, torch.arange(300) % 2, real[:50], torch.arange(50) % 2)
    prior = GaussianPrior.fit(real, components=3)
    nll = {}
    for weight in (0.0, 1.0):
        distiller = Distiller("value", InnerSpec(hidden=4), [task], 10, lr=1e-2, prior=prior, prior_weight=weight)
        for i in range(20):
            terms = distiller.step([(real[i * 10 : (i + 1) * 10], task.train_y[i * 10 : (i + 1) * 10])])
        nll[weight] = float(prior.nll_per_pixel(distiller.D.detach()))
        assert ("prior_nll" in terms) == (weight > 0)  # logged only when on
    assert nll[1.0] < nll[0.0] - 1  # nats per pixel


def test_the_inner_problem_is_ambiguous_only_under_orthogonal_q_and_protocol_b_is_not():
    g = torch.Generator().manual_seed(0)
    D = torch.rand(12, 16, generator=g)
    w = init_params(16, 5, g, scale=0.3)
    w = w._replace(a=torch.rand(16, generator=g), b=torch.randn(5, generator=g))
    real = _images(200)
    task = Task(
        "toy", real, (real[:, 0] > real[:, 0].median()).long(), real[:60], (real[:60, 0] > real[:, 0].median()).long()
    )
    calls = []

    def protocol_b(x, seed):
        calls.append(x)
        return float(x.sum())  # stands in for a refit: tells the sets apart

    measured = ambiguity.check(InnerSpec(hidden=5), D, w, task, protocol_b)
    assert set(measured) == set(ambiguity.AMBIGUITY_METRICS)
    assert measured["ambiguity_hidden_invertible"] < 1e-4  # W^T x unchanged for any invertible Q
    assert measured["ambiguity_inner_orthogonal"] < 1e-5  # the inner loss too, when Q is orthogonal
    assert measured["ambiguity_inner_invertible"] > 1e-2  # not when it is not
    assert measured["ambiguity_inner_permuted"] < 1e-6  # D is a set
    assert len(calls) == 2 and not torch.allclose(calls[0], D) and torch.allclose(calls[1].sum(0), D.sum(0))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_canonical_order_does_not_depend_on_the_stored_order(seed):
    D = np.random.default_rng(0).random((30, 16))
    shuffled = np.random.default_rng(seed + 1).permutation(30)
    assert np.array_equal(D[ambiguity.canonical_order(D)], D[shuffled][ambiguity.canonical_order(D[shuffled])])
    assert not np.array_equal(ambiguity.canonical_order(D), np.arange(30))  # it does reorder


def _toy_task(n: int = 300) -> Task:
    real = _images(n)
    labels = (real[:, 0] > real[:, 0].median()).long()
    return Task("toy", real, labels, real[: n // 5], labels[: n // 5])


@pytest.mark.parametrize("solver", ["penalty", "value"])
def test_two_layers_are_meta_learned_together_and_their_inner_terms_count(solver):
    task = _toy_task()
    spec = InnerSpec(hidden=6, layers=2)
    distiller = Distiller(solver, spec, [task], 10, lr=1e-2, seed=0)
    assert len(distiller.upper) == 1 and distiller.upper[0].W.shape == (6, 6)
    if solver == "penalty":  # the second layer's inner gradient, on the first layer's features of D, is penalised too
        with torch.no_grad():
            first = float(grad_norm2(spec.grad(distiller.w, distiller.D)))
        assert float(distiller.step([(task.train_x[:10], task.train_y[:10])])["penalty"]) > first
    top = distiller.upper[0].W.detach().clone()
    losses = []
    for _epoch in range(15):
        for i in range(0, 300, 30):
            losses.append(float(distiller.step([(task.train_x[i : i + 30], task.train_y[i : i + 30])])["outer_loss"]))
    assert sum(losses[-10:]) < sum(losses[:10])  # the outer loss falls
    assert not torch.equal(top, distiller.upper[0].W)  # the second layer trains with the first
    accuracy, _, _ = retrained_accuracy(
        spec, distiller.D, task, steps=100, seed=0
    )  # protocol (b), both layers refitted
    assert accuracy > 0.6  # chance is 1/2
