"""Encoders and heads."""

from lfr_report.models.encoders import (
    ENCODERS,
    ConvNetEncoder,
    RandomFeatureCNN,
    ResNet18Encoder,
    build_encoder,
    encoder_arch,
)
from lfr_report.models.heads import Projector

__all__ = [
    "ENCODERS",
    "ConvNetEncoder",
    "Projector",
    "RandomFeatureCNN",
    "ResNet18Encoder",
    "build_encoder",
    "encoder_arch",
]
