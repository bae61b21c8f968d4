"""The ``probe`` ingredient: the linear probe on frozen representations."""

from __future__ import annotations

import torch
from sacred import Ingredient
from torch import Tensor

from lfr_report.checks import declare, interval, non_negative, positive, positive_int
from lfr_report.evaluate import ProbeResult, linear_probe

probe_ingredient = Ingredient("probe")


# fmt: off
@probe_ingredient.config
def config():
    epochs = 50  # passes over the (precomputed) training features
    lr = 1e-2  # Adam's initial learning rate, decayed to 0 along a cosine over all steps
    batch_size = 1024  # features per step
    weight_decay = 0.0  # L2 penalty on the probe's weights
    whiten_floor = 1e-2  # PCA whitening: eigenvalues below this fraction of the largest are raised to it


@probe_ingredient.named_config
def fast():
    epochs = 10  # enough to see the probe learn on tiny data
# fmt: on


declare(probe_ingredient, {
    "epochs": positive_int, "lr": positive, "batch_size": positive_int, "weight_decay": non_negative,
    "whiten_floor": interval("(0, 1]"),
})  # fmt: skip


@probe_ingredient.capture
def run_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    device: torch.device,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    whiten_floor: float,
    _seed: int,
) -> ProbeResult:
    """Train and score a linear probe with the configured optimiser settings."""
    return linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        whiten_floor=whiten_floor,
        seed=_seed,
        device=device,
    )
