"""Self-supervised objectives and the training loop that logs every loss term."""

from lfr_report.ssl.simclr import SimCLRLoss, SimCLRTerms, nt_xent_loss
from lfr_report.ssl.vicreg import (
    VICRegLoss,
    VICRegTerms,
    covariance_loss,
    invariance_loss,
    variance_loss,
    vicreg_loss,
)

__all__ = [
    "SimCLRLoss",
    "SimCLRTerms",
    "VICRegLoss",
    "VICRegTerms",
    "covariance_loss",
    "invariance_loss",
    "nt_xent_loss",
    "variance_loss",
    "vicreg_loss",
]
