"""Representations of a frozen encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
        batch = ((batch - mean_t) / std_t).contiguous(memory_format=layout)
        out.append(encoder(batch).float().cpu())
    return torch.cat(out)
