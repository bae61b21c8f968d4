"""Linear probing: one linear layer trained with cross-entropy on frozen features."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ProbeResult:
    train_accuracy: float  # fraction in [0, 1]
    test_accuracy: float
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, train_accuracy


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeResult:
    """Train ``nn.Linear(dim, classes)`` with Adam and cross-entropy on ``train_x`` and
    report accuracy on both sets.

    Features are standardised with the training set's per-dimension mean and std
    (an affine map, so the probe stays linear in the features) which makes one
    learning rate work for representations and raw pixels alike.
    """
    train_x, test_x = train_x.float().flatten(1), test_x.float().flatten(1)
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-6)
    train_x, test_x = ((train_x - mean) / std).to(device), ((test_x - mean) / std).to(device)
    train_y, test_y = train_y.to(device), test_y.to(device)
    classes = int(max(train_y.max(), test_y.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = nn.Linear(train_x.shape[1], classes).to(device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(probe(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        history.append({"loss": float(total) / len(order)})
    return ProbeResult(
        accuracy(probe, train_x, train_y), accuracy(probe, test_x, test_y), epochs, history
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Fraction of rows of ``x`` whose arg-max prediction equals ``y``."""
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)
