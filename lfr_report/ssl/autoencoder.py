"""Training the convolutional autoencoder, plain or denoising.

The loss is the mean squared error between the clean image and the reconstruction of
its input; the denoising autoencoder's input is the image plus Gaussian noise of
standard deviation ``noise_std`` (pixel values in [0, 1], clamped back into that range).
Mean squared error, as the assignment's notebook uses; images are scaled to [0, 1] and
not standardised, so the decoder's sigmoid can reach them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report.data.normalise import to_float
from lfr_report.ssl.train import LogFn, train_loop


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
    checkpoint: Path | None = None,
) -> float:
    """Adam on ``reconstruction_loss`` over uint8 ``images``; logs ``train_loss`` (epoch mean)
    and ``test_loss`` (same noise, fixed per epoch) after each epoch. Returns the last test loss.
    With ``checkpoint`` it saves after every epoch and resumes from it (see ``train_loop``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    images = images.to(device)

    def step(batch: Tensor, index: Tensor) -> dict[str, Tensor]:
        return {"loss": reconstruction_loss(model, to_float(batch), noise_std, generator)}

    def evaluate(epoch: int) -> dict[str, float]:
        return {"loss": evaluate_reconstruction(model, test_images, noise_std, device, seed=epoch)}

    # Per-epoch means, each image counted once (the last batch may be smaller), as this run has always logged.
    result = train_loop(
        step, images, modules={"model": model}, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
        device=device, generator=generator, log=log, evaluate=evaluate, checkpoint=checkpoint, log_every=None,
        epoch_mean="images", drop_last=False, progress=progress,
    )  # fmt: skip
    return result.last_test_terms.get("loss", float("nan"))


@torch.no_grad()
def evaluate_reconstruction(model: nn.Module, images: Tensor, noise_std: float, device: torch.device, seed: int = 0,
                            batch_size: int = 1024) -> float:  # fmt: skip
    """Mean squared reconstruction error over uint8 ``images`` (noise drawn with ``seed``)."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device))
        total += float(reconstruction_loss(model, x, noise_std, generator)) * len(x)
    return total / len(images)
