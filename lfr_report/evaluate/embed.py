"""Two-dimensional maps of representations for figures: PCA and t-SNE (scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE


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
