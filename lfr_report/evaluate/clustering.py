"""Clustering (exercise section 4.3): k-means and the silhouette score (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score


@dataclass(frozen=True)
class Clustering:
    assignments: np.ndarray  # cluster index per item
    centres: np.ndarray  # (k, dim)
    silhouette: float  # in the original dimension, on ``silhouette_points`` items
    silhouette_points: int
    adjusted_rand: float  # agreement with the true classes (0: chance, 1: identical)


def cluster(features: np.ndarray, labels: np.ndarray, k: int = 10, seed: int = 0,
            silhouette_points: int = 10_000) -> Clustering:  # fmt: skip
    """k-means with ``k`` clusters on all ``features``; the silhouette score (eq. 8) on a
    seeded random sample of ``silhouette_points`` items, since it costs O(N^2) distances."""
    features = np.asarray(features, dtype=np.float32)
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    sample = min(silhouette_points, len(features))
    silhouette = silhouette_score(features, kmeans.labels_, sample_size=sample, random_state=seed)
    return Clustering(
        kmeans.labels_, kmeans.cluster_centers_, float(silhouette), sample,
        float(adjusted_rand_score(labels, kmeans.labels_)),
    )  # fmt: skip
