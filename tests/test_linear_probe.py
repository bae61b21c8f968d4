"""The linear probe learns what is linearly decodable and nothing more."""

from __future__ import annotations

import torch

from lfr_report.evaluate import linear_probe


def _blobs(n, seed, dim=16, classes=4, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(n) % classes
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_separable_classes_are_learned():
    train_x, train_y = _blobs(400, 0)
    test_x, test_y = _blobs(200, 1)
    result = linear_probe(train_x, train_y, test_x, test_y, epochs=10, lr=1e-2, batch_size=32)
    assert result.test_accuracy > 0.97 and result.train_accuracy > 0.97
    assert len(result.history) == 10 and result.history[-1]["loss"] < result.history[0]["loss"]


def test_random_labels_stay_near_chance_on_test():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    train_y, test_y = (
        torch.randint(0, 4, (400,), generator=g),
        torch.randint(0, 4, (400,), generator=g),
    )
    result = linear_probe(train_x, train_y, test_x, test_y, epochs=10, lr=1e-2, batch_size=32)
    assert result.train_accuracy > 0.3  # it does fit the training labels a little
    assert result.test_accuracy < 0.4


def test_probe_is_seeded():
    train_x, train_y = _blobs(200, 0, spread=3.0)
    test_x, test_y = _blobs(100, 1, spread=3.0)
    a = linear_probe(train_x, train_y, test_x, test_y, epochs=3, seed=7)
    b = linear_probe(train_x, train_y, test_x, test_y, epochs=3, seed=7)
    assert a.test_accuracy == b.test_accuracy and a.history == b.history


def test_the_examples_sgd_protocol_on_raw_features_learns_and_differs_from_adams():
    train_x, train_y = _blobs(400, 0)
    test_x, test_y = _blobs(200, 1)
    sgd = linear_probe(train_x, train_y, test_x, test_y, epochs=20, optimizer="sgd", lr=1e-1, momentum=0.9,
                       schedule="constant", batch_size=32, whiten_floor=None)  # fmt: skip
    adam = linear_probe(train_x, train_y, test_x, test_y, epochs=20, lr=1e-1, batch_size=32, whiten_floor=None)
    assert sgd.test_accuracy > 0.9  # chance is 1/4
    assert sgd.history != adam.history  # the optimiser option reaches the training
