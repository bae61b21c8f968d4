"""Unsupervised dataset distillation by bilevel optimisation (lfr2024 project)."""

from lfr_report.distill.inner import (
    AEParams,
    features,
    grad_norm2,
    init_params,
    inner_grad,
    inner_loss,
    reconstruct,
    reconstruction_error,
)
from lfr_report.distill.solvers import SOLVERS, Distiller, Diverged, InnerSpec, Task, fit_inner, hypergradient

__all__ = [
    "SOLVERS",
    "AEParams",
    "Distiller",
    "Diverged",
    "InnerSpec",
    "Task",
    "features",
    "fit_inner",
    "grad_norm2",
    "hypergradient",
    "init_params",
    "inner_grad",
    "inner_loss",
    "reconstruct",
    "reconstruction_error",
]
