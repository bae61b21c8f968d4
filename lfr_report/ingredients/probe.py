"""The ``probe`` ingredient: the linear probe on frozen representations."""

from __future__ import annotations

import torch
from sacred import Ingredient
from torch import Tensor

from lfr_report.errors import ConfigError
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


@probe_ingredient.config_hook
def check(config, command_name, logger):
    probe = config["probe"]
    if probe["epochs"] < 1 or probe["batch_size"] < 1 or probe["lr"] <= 0 or not 0 < probe["whiten_floor"] <= 1:
        raise ConfigError(f"probe needs epochs >= 1, batch_size >= 1, lr > 0 and 0 < whiten_floor <= 1, got {probe}")
    return {}


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
