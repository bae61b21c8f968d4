"""Encoders and heads."""

from lfr_report.models.encoders import (
    ENCODERS,
    ConvNetEncoder,
    RandomFeatureCNN,
    ResNet18Encoder,
    build_encoder,
    encoder_arch,
)
from lfr_report.models.heads import Projector, classifier_head

__all__ = [
    "ENCODERS",
    "ConvNetEncoder",
    "Projector",
    "RandomFeatureCNN",
    "ResNet18Encoder",
    "build_encoder",
    "classifier_head",
    "encoder_arch",
]
