"""Self-supervised objectives and the training loop that logs every loss term."""

from lfr_report.ssl.vicreg import (
    VICRegLoss,
    VICRegTerms,
    covariance_loss,
    invariance_loss,
    variance_loss,
    vicreg_loss,
)

__all__ = [
    "VICRegLoss",
    "VICRegTerms",
    "covariance_loss",
    "invariance_loss",
    "variance_loss",
    "vicreg_loss",
]
