"""Downstream evaluations of frozen representations."""

from lfr_report.evaluate.features import encode
from lfr_report.evaluate.linear_probe import ProbeResult, accuracy, linear_probe

__all__ = ["ProbeResult", "accuracy", "encode", "linear_probe"]
