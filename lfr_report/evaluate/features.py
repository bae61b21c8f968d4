"""Representations of a frozen encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lfr_report.data.normalise import normalise


@torch.no_grad()
def encode(
    encoder: nn.Module,
    images: Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    channels_last: bool = False,
) -> Tensor:
    """``encoder`` applied in eval mode to uint8 ``images`` normalised with the dataset's
    per-channel ``mean`` and ``std``; a float32 CPU tensor ``(N, dim)``."""
    encoder.eval()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for start in range(0, len(images), batch_size):
        batch = normalise(images[start : start + batch_size].to(device, non_blocking=True), mean, std, layout)
        out.append(encoder(batch).float().cpu())
    return torch.cat(out)
