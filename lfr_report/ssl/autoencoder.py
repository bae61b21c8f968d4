"""Training the convolutional autoencoder, plain or denoising.

The loss is the mean squared error between the clean image and the reconstruction of
its input; the denoising autoencoder's input is the image plus Gaussian noise of
standard deviation ``noise_std`` (pixel values in [0, 1], clamped back into that range).
Mean squared error, as the assignment's notebook uses; images are scaled to [0, 1] and
not standardised, so the decoder's sigmoid can reach them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

LogFn = Callable[[str, float, int], None]


def corrupt(x: Tensor, noise_std: float, generator: torch.Generator | None = None) -> Tensor:
    """``x`` plus N(0, noise_std^2) noise, clamped to [0, 1]; ``x`` itself when noise_std is 0."""
    if noise_std == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise_std * noise).clamp_(0, 1)


def reconstruction_loss(model: nn.Module, x: Tensor, noise_std: float = 0.0, generator=None) -> Tensor:
    """Mean squared error of ``model(corrupt(x))`` against the clean ``x`` (floats in [0, 1])."""
    return F.mse_loss(model(corrupt(x, noise_std, generator)), x)


def train_autoencoder(
    model: nn.Module,
    images: Tensor,
    test_images: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    noise_std: float,
    generator: torch.Generator,
    device: torch.device,
    log: LogFn,
    progress: bool = True,
) -> float:
    """Adam on ``reconstruction_loss`` over uint8 ``images``; logs ``train_loss`` (epoch mean)
    and ``test_loss`` (same noise, fixed per epoch) after each epoch. Returns the last test loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    images = images.to(device)
    test_loss = float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator, device=generator.device).to(device)
        total = torch.zeros((), device=device)
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False):
            x = images[order[start : start + batch_size]].float() / 255
            loss = reconstruction_loss(model, x, noise_std, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(x)
        log("train_loss", float(total) / len(order), epoch)
        test_loss = evaluate_reconstruction(model, test_images, noise_std, device, seed=epoch)
        log("test_loss", test_loss, epoch)
    return test_loss


@torch.no_grad()
def evaluate_reconstruction(model: nn.Module, images: Tensor, noise_std: float, device: torch.device, seed: int = 0,
                            batch_size: int = 1024) -> float:  # fmt: skip
    """Mean squared reconstruction error over uint8 ``images`` (noise drawn with ``seed``)."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float() / 255
        total += float(reconstruction_loss(model, x, noise_std, generator)) * len(x)
    return total / len(images)
