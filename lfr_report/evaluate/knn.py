"""The weighted k-nearest-neighbour classifier on frozen representations, as self-supervised
benchmarks report it (Wu et al. 2018, "instance discrimination"; lightly's and solo-learn's
kNN accuracy): no training, so it scores a representation without a probe's optimiser.

With the features L2-normalised, each test point takes its ``k`` most cosine-similar
training points (similarity s_i) and gives each class c the score

    score(c) = sum_{i in top k, y_i = c} exp(s_i / T)

predicting the class of highest score (T = 0.1, k = 200 in those benchmarks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_predict(train_x: Tensor, train_y: Tensor, test_x: Tensor, k: int = 200, temperature: float = 0.1,
                chunk: int = 1024) -> Tensor:  # fmt: skip
    """The predicted class of each row of ``test_x``; see the module docstring. ``chunk`` test
    rows are scored at a time (the similarity matrix of all of them may not fit)."""
    if not 1 <= k <= len(train_x):
        raise ValueError(f"k={k} neighbours asked of {len(train_x)} training points")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    reference = F.normalize(train_x.float(), dim=1)
    labels = train_y.long()
    classes = int(labels.max()) + 1
    predictions = []
    for start in range(0, len(test_x), chunk):
        queries = F.normalize(test_x[start : start + chunk].float(), dim=1)
        similarity, index = (queries @ reference.T).topk(k, dim=1)
        votes = torch.zeros(len(queries), classes, dtype=similarity.dtype)
        votes.scatter_add_(1, labels[index], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 200,
                 temperature: float = 0.1) -> float:  # fmt: skip
    """The share of ``test_x`` whose weighted kNN class (``knn_predict``) is its label."""
    return (knn_predict(train_x, train_y, test_x, k, temperature) == test_y.long()).float().mean().item()
