"""Linear probing: one linear layer trained with cross-entropy on frozen (whitened) features."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report.ssl.train import train_loop


@dataclass
class ProbeResult:
    train_accuracy: float  # fraction in [0, 1]
    test_accuracy: float
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, train_accuracy


def whitening(x: Tensor, floor: float = 1e-2) -> tuple[Tensor, Tensor]:
    """Mean and matrix of the PCA whitening fitted on ``x``: ``(x - mean) @ matrix`` has
    identity covariance. Eigenvalues below ``floor`` times the largest are raised to it,
    so directions of (near) zero variance, such as constant border pixels, are not blown up.
    """
    mean = x.mean(dim=0)
    covariance = torch.cov((x - mean).T.double()).reshape(x.shape[1], x.shape[1])
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues = eigenvalues.clamp_min(floor * eigenvalues.max().clamp_min(1e-12))
    return mean, (eigenvectors / eigenvalues.sqrt()).float()


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    epochs: int = 50,
    optimizer: str = "adam",
    lr: float = 1e-2,
    momentum: float = 0.9,
    schedule: str = "cosine",
    batch_size: int = 1024,
    weight_decay: float = 0.0,
    whiten_floor: float | None = 1e-2,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeResult:
    """Train ``nn.Linear(dim, classes)`` with Adam (or SGD with ``momentum``; the learning
    rate cosine-decayed to 0 or ``constant``) and cross-entropy on ``train_x``; report
    accuracy on both sets.

    Unless ``whiten_floor`` is None, features are first PCA-whitened with the training set's statistics (see
    ``whitening``). That is an affine map, so the probe stays linear in the features,
    but it makes the problem well conditioned: on VICReg features of Fashion-MNIST,
    50 epochs of Adam on whitened features reach the accuracy of a fully converged
    L-BFGS logistic regression (87.0%), where 30 epochs on merely standardised
    features stopped 2.3 points short. Raw pixels score the same either way (84.0%).
    """
    train_x, test_x = train_x.float().flatten(1), test_x.float().flatten(1)
    if whiten_floor is not None:
        mean, matrix = whitening(train_x, whiten_floor)
        train_x, test_x = (train_x - mean) @ matrix, (test_x - mean) @ matrix
    train_x, test_x = train_x.to(device), test_x.to(device)
    train_y, test_y = train_y.to(device), test_y.to(device)
    classes = int(max(train_y.max(), test_y.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = nn.Linear(train_x.shape[1], classes).to(device)
    if optimizer == "sgd":
        optimiser: torch.optim.Optimizer = torch.optim.SGD(
            probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    else:
        optimiser = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train_x) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps) if schedule == "cosine" else None
    history: list[dict[str, float]] = []

    def step(batch: tuple[Tensor, Tensor], index: Tensor) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(probe(batch[0]), batch[1])}

    # Seconds to train, so no checkpoint; its history is each epoch's mean loss, every image counted.
    train_loop(
        step, (train_x, train_y), modules={"probe": probe}, optimizer=optimiser, epochs=epochs, batch_size=batch_size,
        device=torch.device(device), generator=generator, log=lambda name, value, step: history.append({"loss": value}),
        log_every=None, epoch_mean="images", drop_last=False, scheduler=scheduler, progress=False,
    )  # fmt: skip
    return ProbeResult(accuracy(probe, train_x, train_y), accuracy(probe, test_x, test_y), epochs, history)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Fraction of rows of ``x`` whose arg-max prediction equals ``y``."""
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)
