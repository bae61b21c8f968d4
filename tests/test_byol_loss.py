"""BYOL's loss, target-decay schedule and EMA update against loops and formulas written out,
against lightly (``NegativeCosineSimilarity``, ``cosine_schedule``, ``update_momentum``),
their properties and errors, and a short training in which the loss must fall."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from helpers import noisy_flipped_view
from lightly.loss import NegativeCosineSimilarity
from lightly.models.utils import update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from lfr_report.ssl.byol import BYOLTerms, byol_loss, ema_update, target_decay


def reference_byol(p_a, p_b, z_a, z_b):
    """The paper's symmetrised loss as loops over samples and dimensions (nested lists, no torch)."""

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    def distance(p, z):
        return sum((a - b) ** 2 for a, b in zip(unit(p), unit(z), strict=True))

    def cosine(p, z):
        return sum(a * b for a, b in zip(unit(p), unit(z), strict=True))

    n = len(p_a)
    loss = sum(distance(p_a[i], z_b[i]) + distance(p_b[i], z_a[i]) for i in range(n)) / n
    similarity = sum(cosine(p_a[i], z_b[i]) + cosine(p_b[i], z_a[i]) for i in range(n)) / (2 * n)
    return loss, similarity


def _four(seed, n=7, d=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize(("seed", "n", "d"), [(0, 1, 3), (1, 7, 5), (2, 16, 32)])
def test_byol_loss_is_the_loop_over_samples_and_dimensions(seed, n, d):
    p_a, p_b, z_a, z_b = _four(seed, n, d)
    terms = byol_loss(p_a, p_b, z_a, z_b)
    assert isinstance(terms, BYOLTerms) and terms._fields[0] == "loss"
    loss, similarity = reference_byol(p_a.tolist(), p_b.tolist(), z_a.tolist(), z_b.tolist())
    assert terms.loss.item() == pytest.approx(loss, rel=1e-12)
    assert terms.similarity.item() == pytest.approx(similarity, rel=1e-12, abs=1e-14)


def test_byol_loss_is_four_plus_twice_lightlys_two_negative_cosine_similarities():
    """lightly's ``NegativeCosineSimilarity`` is ``-mean cos``; its BYOL example optimises
    ``0.5 (ncs(p_a, z_b) + ncs(p_b, z_a))``. Each of our terms is ``2 - 2 cos``, so ours is
    ``4 + 2 (ncs(p_a, z_b) + ncs(p_b, z_a))``: 4 + 4 times lightly's example loss (same minimiser,
    gradients 4 times as large)."""
    p_a, p_b, z_a, z_b = _four(3, 9, 6)
    ncs = NegativeCosineSimilarity()
    lightly_example = 0.5 * (ncs(p_a, z_b) + ncs(p_b, z_a))
    terms = byol_loss(p_a, p_b, z_a, z_b)
    torch.testing.assert_close(terms.loss, 4 + 4 * lightly_example, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.similarity, -lightly_example, rtol=1e-12, atol=1e-12)


def test_byol_loss_is_zero_when_predictions_point_along_their_targets_and_eight_when_opposite():
    p_a, p_b, _, _ = _four(4)
    g = torch.Generator().manual_seed(5)
    scale = lambda: torch.rand(7, 1, generator=g, dtype=torch.float64) * 10 + 0.1  # noqa: E731
    along = byol_loss(p_a, p_b, p_b * scale(), p_a * scale())  # z_b pairs with p_a, z_a with p_b
    assert along.loss.item() == pytest.approx(0.0, abs=1e-12)
    assert along.similarity.item() == pytest.approx(1.0, rel=1e-12)
    opposite = byol_loss(p_a, p_b, -p_b * scale(), -p_a * scale())
    assert opposite.loss.item() == pytest.approx(8.0, rel=1e-12)  # each term ||u + u||^2 = 4, two terms
    assert opposite.similarity.item() == pytest.approx(-1.0, rel=1e-12)
    orthogonal = byol_loss(torch.eye(2)[[0]], torch.eye(2)[[1]], torch.eye(2)[[0]], torch.eye(2)[[1]])
    assert orthogonal.loss.item() == pytest.approx(4.0)  # p_a = e0 against z_b = e1, p_b = e1 against z_a = e0


def test_byol_loss_pairs_each_prediction_with_the_other_views_target_and_is_symmetric():
    p_a, p_b, z_a, z_b = _four(6)
    base = byol_loss(p_a, p_b, z_a, z_b)
    torch.testing.assert_close(byol_loss(p_b, p_a, z_b, z_a).loss, base.loss)  # swapping the views
    assert byol_loss(p_a, p_b, z_b, z_a).loss.item() != pytest.approx(base.loss.item())  # not the same view's
    order = torch.randperm(7, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(byol_loss(p_a[order], p_b[order], z_a[order], z_b[order]).loss, base.loss)


def test_no_gradient_reaches_the_targets():
    p_a, p_b, z_a, z_b = (t.requires_grad_() for t in _four(8))
    terms = byol_loss(p_a, p_b, z_a, z_b)
    terms.loss.backward()
    assert z_a.grad is None and z_b.grad is None
    assert p_a.grad.abs().sum().item() > 0 and p_b.grad.abs().sum().item() > 0
    assert not terms.similarity.requires_grad


def test_target_decay_is_the_papers_cosine_schedule_and_lightlys_with_one_more_step():
    """lightly's ``cosine_schedule(k, max_steps, start, end)`` reaches ``end`` at step
    ``max_steps - 1`` (it divides by ``max_steps - 1``), so ours of K steps is lightly's of K + 1."""
    for total in (1, 2, 7, 100):
        for step in range(total + 1):
            want = 1 - (1 - 0.99) * (math.cos(math.pi * step / total) + 1) / 2
            assert target_decay(step, total, 0.99) == pytest.approx(want, rel=1e-15)
            assert target_decay(step, total, 0.99) == pytest.approx(cosine_schedule(step, total + 1, 0.99, 1.0),
                                                                    rel=1e-12)  # fmt: skip


def test_target_decay_rises_from_base_to_one():
    assert target_decay(0, 50) == pytest.approx(0.996, rel=1e-15)
    assert target_decay(50, 50) == 1.0
    assert target_decay(25, 50) == pytest.approx(0.998, rel=1e-12)  # half way: the mean of the endpoints
    values = [target_decay(k, 50, 0.9) for k in range(51)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_target_decay_rejects_steps_outside_the_schedule():
    with pytest.raises(ValueError, match="total_steps"):
        target_decay(0, 0)
    with pytest.raises(ValueError, match="step must be in"):
        target_decay(-1, 10)
    with pytest.raises(ValueError, match="step must be in"):
        target_decay(11, 10)


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _online_with_new_statistics():
    online = _net(1)
    with torch.no_grad():
        for value in online.parameters():
            value.add_(torch.randn_like(value))  # BatchNorm's weights and biases too, not left at 1 and 0
    online.train()
    online(torch.randn(8, 4))  # running mean, var and num_batches_tracked move away from the target's
    return online


def test_ema_update_keeps_the_target_at_tau_one_and_copies_the_online_at_tau_zero():
    target, online = _net(0), _online_with_new_statistics()
    before = copy.deepcopy(target.state_dict())
    ema_update(target, online, 1.0)
    for name, value in target.named_parameters():
        assert torch.equal(value, before[name])
    ema_update(target, online, 0.0)
    for name, value in target.state_dict().items():
        assert torch.equal(value, online.state_dict()[name]), name


def test_ema_update_averages_parameters_like_the_formula_and_lightly_and_copies_buffers():
    """lightly's ``update_momentum(model, model_ema, m)`` is ``ema = m ema + (1 - m) model`` over
    the parameters only (it leaves the buffers alone); ours also copies the online buffers."""
    target, online = _net(0), _online_with_new_statistics()
    lightly_target = copy.deepcopy(target)
    tau = 0.7
    want = {name: tau * value + (1 - tau) * dict(online.named_parameters())[name]
            for name, value in target.named_parameters()}  # fmt: skip
    target_buffers = copy.deepcopy(dict(target.named_buffers()))
    ema_update(target, online, tau)
    update_momentum(online, lightly_target, tau)
    for name, value in target.named_parameters():
        torch.testing.assert_close(value, want[name], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(value, dict(lightly_target.named_parameters())[name], rtol=1e-6, atol=1e-7)
        assert not torch.equal(value, dict(online.named_parameters())[name])
    for name, value in target.named_buffers():
        assert torch.equal(value, dict(online.named_buffers())[name]), name
        assert not torch.equal(value, target_buffers[name]), name


def test_ema_update_rejects_networks_that_differ():
    with pytest.raises(ValueError, match="parameters differ"):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), 0.9)
    with pytest.raises(ValueError, match="shape"):
        ema_update(nn.Linear(3, 2), nn.Linear(4, 2), 0.9)
    with pytest.raises(ValueError, match="buffers differ"):
        ema_update(nn.BatchNorm1d(3), nn.BatchNorm1d(3, track_running_stats=False), 0.9)


def test_byol_loss_rejects_tensors_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        byol_loss(torch.ones(4, 3), torch.ones(4, 3), torch.ones(4, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="one shape"):
        byol_loss(torch.ones(3), torch.ones(3), torch.ones(3), torch.ones(3))


@pytest.mark.usefixtures("one_thread")
def test_loss_falls_over_20_steps_with_an_ema_target():
    """The tiny ConvNet, a projector and a predictor online; a deepcopy of the encoder and
    projector as the target, moved by ``ema_update`` with ``target_decay`` after each step."""
    from lfr_report.data import load_dataset, normalise
    from lfr_report.models import Projector, build_encoder, encoder_arch

    torch.manual_seed(0)
    data = load_dataset("synthetic", "train")
    images = normalise(data.images[:64], data.spec.mean, data.spec.std)
    online = nn.Sequential(build_encoder(**encoder_arch("convnet", 1, 16, 28, [8, 16], "avg")), Projector(16, 16, 2))
    predictor = Projector(16, 16, 2)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam([*online.parameters(), *predictor.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def view():
        return noisy_flipped_view(images, generator)

    history = []
    for step in range(20):
        view_a, view_b = view(), view()
        with torch.no_grad():
            z_a, z_b = target(view_a), target(view_b)
        terms = byol_loss(predictor(online(view_a)), predictor(online(view_b)), z_a, z_b)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        ema_update(target, online, target_decay(step, 19))
        history.append((terms.loss.item(), terms.similarity.item()))
    losses = [loss for loss, _ in history]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, losses
    assert history[-1][1] > history[0][1]
