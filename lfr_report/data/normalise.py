"""The one normalisation every image takes before a network sees it: uint8 pixels scaled to
float32 in [0, 1], then standardised with the data set's per-channel mean and std,
``(images.float() / 255 - mean) / std``.

The per-channel statistics are made into ``(1, C, 1, 1)`` tensors once per device and dtype
and cached, so a training loop on a GPU does not copy them from the host every batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor


def to_float(images: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]; float images are returned as float32 unchanged."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def normalise(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    memory_format: torch.memory_format | None = None,
) -> Tensor:
    """``(x - mean) / std`` per channel of a ``(B, C, H, W)`` batch, where ``x`` is ``images``
    scaled to [0, 1] when they are uint8 (float images are taken to be in [0, 1] already).
    With ``memory_format`` the result is made contiguous in it (``torch.channels_last``)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    mean_t, std_t = channel_stats(tuple(map(float, mean)), tuple(map(float, std)), x.device, x.dtype)
    out = (x - mean_t) / std_t
    return out if memory_format is None else out.contiguous(memory_format=memory_format)


@functools.lru_cache(maxsize=64)
def channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors on ``device`` (float32 values, cast to
    ``dtype``), made once per arguments."""
    shape = (1, -1, 1, 1)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float32).view(shape).to(device, dtype)  # noqa: E731
    return as_tensor(mean), as_tensor(std)
