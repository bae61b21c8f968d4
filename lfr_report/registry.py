"""What lfr knows by name: its reports and its experiments. The CLI, the Makefile (through
``lfr report all``) and the runner read these; adding a report is one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lfr_report.errors import ConfigError

if TYPE_CHECKING:
    from lfr_report.report.spec import Report

# report name -> the module that declares it as ``REPORT`` (`lfr report NAME`, reports/NAME.pdf)
REPORTS = {
    "vicreg": "lfr_report.report.vicreg",  # acml-ex3: VICReg and downstream evaluations
    "distillation": "lfr_report.report.distillation",  # lfr2024: unsupervised dataset distillation
    "simclr": "lfr_report.report.simclr",  # lfr2024's example report: SimCLR transfer with label fractions
    "autoencoder": "lfr_report.report.autoencoder",  # ps7: autoencoders and an image-text model
    "pretraining": "lfr_report.report.pretraining",  # lfr2024's second example: dAE and Deep InfoMax pretraining
    "methods": "lfr_report.report.methods",  # the lectures' self-supervised methods compared under one protocol
}

# experiment name -> what it runs (experiments/<name>.py)
EXPERIMENTS = {
    "vicreg": "VICReg pretraining and a linear probe",
    "eigenmaps": "Laplacian eigenmaps of random-CNN features",
    "downstream": "retrieval, anomaly detection or clustering with a stored encoder",
    "distill": "unsupervised dataset distillation (three bilevel solvers) and its baselines",
    "simclr": "SimCLR pretraining and linear evaluation on a transfer data set",
    "finetune": "fine-tuning a stored encoder (or its architecture from scratch) with label fractions",
    "autoencoder": "a convolutional (denoising) autoencoder and linear classifiers on it",
    "clip": "an image-text model: contrastive training, probe, zero-shot, retrieval",
    "methods": "one self-supervised method (pretext, masked, contrastive, non-contrastive) under the shared protocol",
    "pretrain": "unsupervised pretraining of the baseline's encoder: Deep InfoMax or a denoising autoencoder",
}


def report(name: str) -> Report:
    """The declaration of report ``name``."""
    if name not in REPORTS:
        raise ConfigError(f"unknown report {name!r}; reports: {', '.join(REPORTS)}")
    return importlib.import_module(REPORTS[name]).REPORT
