"""kNN anomaly detection (exercise section 4.2): score, ROC curve and AUC (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from lfr_report.neighbours import inverse_density_score


@dataclass(frozen=True)
class AnomalyResult:
    scores: np.ndarray  # inverse density score per test item
    labels: np.ndarray  # 1 for anomalies, 0 for normal items
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float

    def most_anomalous(self, n: int) -> np.ndarray:
        """Indices of the ``n`` highest-scoring test items, most anomalous first."""
        return np.argsort(-self.scores, kind="stable")[:n]


def detect_anomalies(
    train: np.ndarray | torch.Tensor,
    normal_test: np.ndarray | torch.Tensor,
    anomalous_test: np.ndarray | torch.Tensor,
    k: int = 2,
) -> AnomalyResult:
    """Score normal (label 0) and anomalous (label 1) test representations against the
    normal training representations with eq. 7, and evaluate with the ROC curve."""
    test = np.concatenate([np.asarray(normal_test), np.asarray(anomalous_test)])
    labels = np.concatenate([np.zeros(len(normal_test), dtype=np.int64), np.ones(len(anomalous_test), dtype=np.int64)])
    scores = inverse_density_score(train, test, k)
    fpr, tpr, _ = roc_curve(labels, scores)
    return AnomalyResult(scores, labels, fpr, tpr, float(roc_auc_score(labels, scores)))
