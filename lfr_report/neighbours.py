"""Nearest neighbours in representation space (faiss, exact L2) and what is built on them:
the kNN inverse-density anomaly score of the exercise (eq. 7) and retrieval. Below both
``ssl`` (VICReg's generated neighbours, ``ssl/views.py``) and ``evaluate`` (anomaly
detection, retrieval, eigenmaps), which use it."""

from __future__ import annotations

import faiss
import numpy as np
import torch


def _float32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    array = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(array, dtype=np.float32)


def knn(reference: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, k: int,
        exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The ``k`` nearest rows of ``reference`` to each row of ``queries`` (exact search).

    Returns Euclidean distances (not squared) and indices, both ``(len(queries), k)``,
    nearest first. With ``exclude_self`` the queries are the reference rows themselves
    and each row's own index is left out of its neighbours.
    """
    reference, queries = _float32(reference), _float32(queries)
    if k < 1 or k + int(exclude_self) > len(reference):
        raise ValueError(f"k={k} neighbours asked of {len(reference)} reference points")
    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(reference)
    squared, ids = index.search(queries, k + int(exclude_self))
    if exclude_self:
        # Drop each query's own index; if duplicates hid it, drop the farthest instead.
        own = ids == np.arange(len(queries))[:, None]
        own[~own.any(axis=1), -1] = True
        keep = ~own
        squared = squared[keep].reshape(len(queries), k)
        ids = ids[keep].reshape(len(queries), k)
    return np.sqrt(np.maximum(squared, 0.0)), ids


def inverse_density_score(train: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor, k: int = 2) -> np.ndarray:
    """Eq. 7 of the exercise: the mean L2 distance from each test point to its ``k``
    nearest training points. Higher means lower density, i.e. more anomalous."""
    distances, _ = knn(train, test, k)
    return distances.mean(axis=1)


def farthest(
    reference: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` farthest rows of ``reference`` from each query (exact), farthest first."""
    reference_t = torch.as_tensor(_float32(reference))
    queries_t = torch.as_tensor(_float32(queries))
    distances = torch.cdist(queries_t, reference_t)
    top = distances.topk(n, dim=1)
    return top.values.numpy(), top.indices.numpy()
