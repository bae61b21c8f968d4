"""Two-dimensional maps of representations for figures (PCA and t-SNE, scikit-learn), how well
a map separates the classes, and how spread a representation is."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def pca_2d(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Projection on the first two principal components, float32 (N, 2)."""
    return PCA(n_components=2).fit_transform(_numpy(features)).astype(np.float32)


def tsne_2d(features: torch.Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """Barnes-Hut t-SNE to two dimensions, PCA-initialised, float32 (N, 2).

    Perplexity is capped below the number of points so tiny (test) inputs work.
    """
    x = _numpy(features)
    perplexity = min(perplexity, max(2.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x).astype(np.float32)


MAP_NEIGHBOURS = 10  # neighbours of the 2-D kNN classifier that scores how well a map separates classes


def knn_map_accuracy(points: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """How well a 2-D map separates the classes: 5-fold cross-validated accuracy of a kNN
    classifier (k = ``MAP_NEIGHBOURS``, fewer for tiny maps) on the points, and its confusion matrix."""
    k = min(MAP_NEIGHBOURS, max(1, len(points) // 5 - 1))
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=k), points, labels, cv=5)
    classes = int(labels.max()) + 1
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return float((predicted == labels).mean()), confusion


def representation_statistics(features: np.ndarray) -> dict[str, float]:
    """How spread a representation is: its effective rank (exp of the entropy of the
    normalised singular values of the centred features) and the share of the variance
    on the first two principal components (what a PCA plot shows)."""
    centred = features - features.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    p = singular / singular.sum()
    variance = singular**2
    return {
        "effective_rank": float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())),
        "top2_variance": float(variance[:2].sum() / variance.sum()),
    }
