"""Representations of a frozen encoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: Tensor,
    preprocess: Callable[[Tensor], Tensor],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``encoder(preprocess(batch))`` over ``images`` in eval mode, as a float32 CPU tensor (N, dim)."""
    encoder.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        out.append(encoder(preprocess(batch)).float().cpu())
    return torch.cat(out)
