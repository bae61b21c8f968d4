"""Laplacian eigenmaps (Belkin & Niyogi, 2003), as in the exercise's Q6.

1. Embed the images with an untrained CNN (the exercise's footnote: 4 conv layers and
   an FC layer to 1024 dimensions), a cheap dimension reduction that keeps spatial
   structure, since L2 on raw pixels is both poor and costly.
2. Build a symmetric kNN graph on those vectors (faiss, exact), with heat-kernel weights
   ``w_ij = exp(-||x_i - x_j||^2 / t)``, t the median squared neighbour distance.
3. Take the eigenvectors of the normalised graph Laplacian ``L = I - D^-1/2 W D^-1/2``
   with the smallest eigenvalues, dropping the trivial one; as the representation use
   ``D^-1/2 u`` (the solutions of the generalised problem ``L u = lambda D u``).

The embedding exists only for the points the graph was built on (it is transductive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh

from lfr_report.neighbours import knn


@dataclass(frozen=True)
class Eigenmap:
    embedding: np.ndarray  # (N, components)
    eigenvalues: np.ndarray  # of the normalised Laplacian, ascending, trivial one excluded
    components_connected: int  # connected components of the kNN graph (1 is the healthy case)


def knn_graph(x: np.ndarray, neighbours: int) -> sp.csr_matrix:
    """Symmetric kNN affinity matrix with heat-kernel weights (see the module docstring)."""
    distances, ids = knn(x, x, neighbours, exclude_self=True)
    squared = distances**2
    t = float(np.median(squared)) or 1.0
    rows = np.repeat(np.arange(len(x)), neighbours)
    weights = sp.csr_matrix((np.exp(-squared.ravel() / t), (rows, ids.ravel())), shape=(len(x), len(x)))
    return weights.maximum(weights.T).tocsr()


def laplacian_eigenmap(x: np.ndarray, neighbours: int = 10, components: int = 32, seed: int = 0) -> Eigenmap:
    """The ``components``-dimensional Laplacian eigenmap of the rows of ``x``."""
    weights = knn_graph(np.asarray(x, dtype=np.float32), neighbours)
    n_connected, _ = connected_components(weights, directed=False)
    degree = np.asarray(weights.sum(axis=1)).ravel()
    d_inv_sqrt = sp.diags(1.0 / np.sqrt(degree))
    normalised = d_inv_sqrt @ weights @ d_inv_sqrt
    # The smallest eigenvalues of L = I - N are 1 minus the largest of N: ask for those,
    # which Lanczos finds quickly, instead of the ill-conditioned smallest of L.
    v0 = np.random.default_rng(seed).standard_normal(len(x))
    values, vectors = eigsh(normalised, k=components + 1, which="LA", v0=v0)
    order = np.argsort(-values)
    values, vectors = 1.0 - values[order], vectors[:, order]
    embedding = (d_inv_sqrt @ vectors)[:, 1:]
    # Eigenvector signs are arbitrary: fix them so runs are comparable.
    embedding *= np.sign(embedding[np.abs(embedding).argmax(axis=0), np.arange(embedding.shape[1])])
    return Eigenmap(embedding.astype(np.float32), values[1:], int(n_connected))
