"""Downstream evaluations of frozen representations."""

from lfr_report.evaluate.features import extract_features
from lfr_report.evaluate.linear_probe import ProbeResult, accuracy, linear_probe

__all__ = ["ProbeResult", "accuracy", "extract_features", "linear_probe"]
