"""The ``probe`` ingredient: the linear probe on frozen representations."""

from __future__ import annotations

import torch
from sacred import Ingredient
from torch import Tensor

from lfr_report.checks import added_later, boolean, declare, interval, non_negative, one_of, positive, positive_int
from lfr_report.evaluate import ProbeResult, linear_probe

probe_ingredient = Ingredient("probe")


# fmt: off
@probe_ingredient.config
def config():
    epochs = 50  # passes over the (precomputed) training features
    optimizer = "adam"  # adam: lfr's fast CPU protocol | sgd: the SimCLR example's linear evaluation (with momentum)
    lr = 1e-2  # the optimiser's initial learning rate
    momentum = 0.9  # sgd only
    schedule = "cosine"  # cosine: lr decays to 0 over all steps | constant
    batch_size = 1024  # features per step
    weight_decay = 0.0  # L2 penalty on the probe's weights
    whiten = True  # PCA-whiten the features first (an affine map: the probe stays linear; converges in fewer epochs)
    whiten_floor = 1e-2  # PCA whitening: eigenvalues below this fraction of the largest are raised to it


@probe_ingredient.named_config
def fast():
    epochs = 10  # enough to see the probe learn on tiny data


# fmt: on


declare(probe_ingredient, {
    "epochs": positive_int, "optimizer": one_of("adam", "sgd"), "lr": positive, "momentum": interval("[0, 1)"),
    "schedule": one_of("cosine", "constant"), "batch_size": positive_int, "weight_decay": non_negative,
    "whiten": boolean, "whiten_floor": interval("(0, 1]"),
})  # fmt: skip
# Runs recorded before these options existed trained Adam, cosine, on whitened features.
added_later(probe_ingredient, {"optimizer": "adam", "momentum": 0.9, "schedule": "cosine", "whiten": True})


@probe_ingredient.capture
def run_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    device: torch.device,
    epochs: int,
    optimizer: str,
    lr: float,
    momentum: float,
    schedule: str,
    batch_size: int,
    weight_decay: float,
    whiten: bool,
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
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        schedule=schedule,
        batch_size=batch_size,
        weight_decay=weight_decay,
        whiten_floor=whiten_floor if whiten else None,
        seed=_seed,
        device=device,
    )
