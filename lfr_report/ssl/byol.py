"""BYOL, "Bootstrap Your Own Latent" (Grill et al. 2020).

An online network (encoder, projector, predictor q) and a target network (encoder and
projector only, an exponential moving average of the online ones) see two views a, b of a
batch. With the online predictions p_a = q(z_a), p_b = q(z_b), the target projections
z'_a, z'_b and bars for L2-normalisation, eq. 2 of the paper and its symmetrisation give

    L = 1/N sum_n [ ||p̄_a,n - z̄'_b,n||^2 + ||p̄_b,n - z̄'_a,n||^2 ]
      = 1/N sum_n [ (2 - 2 cos(p_a,n, z'_b,n)) + (2 - 2 cos(p_b,n, z'_a,n)) ]

so L is in [0, 8]: 0 when every prediction points along its target, 8 when every one points
opposite. The target projections are constants (a stop-gradient): no gradient reaches them.

After each optimiser step the target's parameters xi follow the online ones theta,

    xi <- tau_k xi + (1 - tau_k) theta,   tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2

(section 3.2), tau_k rising from tau_base (0.996) at step k = 0 to 1 at the last step K. The
target's buffers (BatchNorm running statistics) are not averaged but copied from the online
network.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BYOLTerms(NamedTuple):
    """The loss and a diagnostic (no gradient needed from it)."""

    loss: Tensor
    similarity: Tensor  # mean cosine similarity of the predictions and their targets, both pairs


def byol_loss(p_a: Tensor, p_b: Tensor, z_a: Tensor, z_b: Tensor) -> BYOLTerms:
    """The symmetrised BYOL loss of the online predictions ``p_a``, ``p_b`` of views a and b
    against the target projections ``z_b``, ``z_a`` of the other view (all ``(N, d)``); the
    targets are detached here. See the module docstring."""
    shapes = [tuple(t.shape) for t in (p_a, p_b, z_a, z_b)]
    if len(set(shapes)) != 1 or p_a.dim() != 2 or p_a.shape[0] < 1:
        raise ValueError(f"expected four (N >= 1, d) tensors of one shape, got {', '.join(map(str, shapes))}")
    p_a, p_b = F.normalize(p_a, dim=1), F.normalize(p_b, dim=1)
    z_a, z_b = F.normalize(z_a.detach(), dim=1), F.normalize(z_b.detach(), dim=1)
    distance = (p_a - z_b).pow(2).sum(dim=1) + (p_b - z_a).pow(2).sum(dim=1)
    with torch.no_grad():
        similarity = ((p_a * z_b).sum(dim=1).mean() + (p_b * z_a).sum(dim=1).mean()) / 2
    return BYOLTerms(distance.mean(), similarity)


def target_decay(step: int, total_steps: int, base: float = 0.996) -> float:
    """tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2 for step k of K: ``base`` at k = 0, 1 at k = K."""
    if total_steps < 1:
        raise ValueError(f"expected total_steps >= 1, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, {total_steps}], got {step}")
    if not 0 <= base <= 1:
        raise ValueError(f"the base decay must be in [0, 1], got {base}")
    return 1 - (1 - base) * (math.cos(math.pi * step / total_steps) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """In place: every parameter of ``target`` becomes ``tau * target + (1 - tau) * online``,
    every buffer (BatchNorm running statistics) a copy of ``online``'s. The two modules must
    have the same parameter and buffer names and shapes."""
    if not 0 <= tau <= 1:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    pairs = []
    for kind, named in (("parameter", nn.Module.named_parameters), ("buffer", nn.Module.named_buffers)):
        theirs, ours = dict(named(online)), dict(named(target))
        if theirs.keys() != ours.keys():
            raise ValueError(f"the target's and online network's {kind}s differ: "
                             f"{sorted(ours.keys() ^ theirs.keys())}")  # fmt: skip
        for name, value in ours.items():
            if value.shape != theirs[name].shape:
                raise ValueError(
                    f"{kind} {name}: the target's shape {tuple(value.shape)}, the online's {tuple(theirs[name].shape)}"
                )
            pairs.append((kind, value, theirs[name]))
    for kind, mine, source in pairs:
        if kind == "parameter":
            mine.mul_(tau).add_(source, alpha=1 - tau)
        else:
            mine.copy_(source)
