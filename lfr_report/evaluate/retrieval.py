"""Qualitative retrieval (exercise Q7): for chosen queries, the nearest and the farthest images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lfr_report.neighbours import farthest, knn


def one_per_class(labels: np.ndarray | torch.Tensor, seed: int = 0, per_class: int = 1) -> np.ndarray:
    """Indices of ``per_class`` random items of each class, in class order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels) if c >= 0]
    return np.concatenate(picked)


@dataclass(frozen=True)
class Retrieval:
    queries: np.ndarray  # (Q,) indices into the searched set
    nearest: np.ndarray  # (Q, n) indices, nearest first, the query itself excluded
    nearest_distance: np.ndarray
    farthest: np.ndarray  # (Q, n) indices, farthest first
    farthest_distance: np.ndarray


def retrieve(features: np.ndarray | torch.Tensor, queries: np.ndarray, n: int = 5) -> Retrieval:
    """For each query (an index into ``features``), its ``n`` nearest other items and ``n`` farthest items."""
    features = np.asarray(features, dtype=np.float32)
    near_d, near_i = knn(features, features[queries], n + 1)
    # Drop the query itself (distance 0) from its own neighbours.
    keep = near_i != queries[:, None]
    keep[keep.all(axis=1), -1] = False
    near_i = near_i[keep].reshape(len(queries), n)
    near_d = near_d[keep].reshape(len(queries), n)
    far_d, far_i = farthest(features, features[queries], n)
    return Retrieval(queries, near_i, near_d, far_i, far_d)
