"""Masked reconstruction for a ConvNet, after the masked autoencoder (MAE) of He et al. 2022,
"Masked Autoencoders Are Scalable Vision Learners".

Each image is cut into (S / p)^2 square patches of side p (S: the image's side) and a fixed
number of them, ``round(ratio * patches)``, is masked per image, chosen uniformly at random
as MAE does (sort one uniform draw per patch; the patches with the largest draws are masked).
With M the pixel mask (1 on masked pixels), x the target image, x_hat the reconstruction and
C the channels,

    L          = sum_{n,c,h,w} M_nhw (x_hat_nchw - x_nchw)^2 / (C sum_{n,h,w} M_nhw)
    visible    = the same with 1 - M in place of M (a diagnostic, not optimised)

i.e. the mean squared error over the masked pixels only, all channels, as MAE's loss.

How this differs from the ViT MAE:

* the encoder is a ConvNet that sees the whole image with the masked patches set to 0 (the
  data set's mean after normalisation); no tokens are dropped, so the encoder costs as much
  as on the full image, and its convolutions straddle the patch borders (a visible pixel's
  features see its masked neighbours' zeros, and vice versa);
* the decoder reconstructs the whole image from the pooled representation vector
  (``lfr_report.models.decoder.ConvNetDecoder``), whose output is a sigmoid in [0, 1]: the
  caller compares it with the unnormalised images in [0, 1], not with MAE's per-patch
  normalised pixels;
* there are no positional embeddings and no mask tokens.

The functions are pure; the random draw comes from the caller's ``torch.Generator``, on its
device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def patch_mask(count: int, image_size: int, patch: int, ratio: float, generator: torch.Generator) -> Tensor:
    """A ``(count, 1, image_size, image_size)`` float mask on ``generator.device``, 1 on masked pixels.

    The image is cut into ``(image_size // patch)^2`` patches; exactly ``round(ratio * patches)``
    of them (at least 1, at most ``patches - 1``) are masked in each image, chosen uniformly and
    independently per image: the patches of the largest values of one uniform draw per patch
    (an argsort of random noise, as MAE's ``random_masking``)."""
    if patch < 1 or image_size < 1 or image_size % patch:
        raise ValueError(f"the patch side must divide the image side, got patch {patch} for images of {image_size}")
    if not 0 < ratio < 1:
        raise ValueError(f"the mask ratio must be in (0, 1), got {ratio}")
    if count < 0:
        raise ValueError(f"expected a count of masks >= 0, got {count}")
    side = image_size // patch
    patches = side * side
    if patches < 2:
        raise ValueError(f"a {patch}-pixel patch leaves one patch in a {image_size}-pixel image: nothing to mask")
    masked = min(max(round(ratio * patches), 1), patches - 1)
    noise = torch.rand(count, patches, generator=generator, device=generator.device)
    order = torch.argsort(noise, dim=1)  # ascending: the first patches - masked are kept, as MAE's ids_keep
    per_patch = torch.zeros(count, patches, device=generator.device)
    per_patch.scatter_(1, order[:, patches - masked :], 1.0)
    grid = per_patch.view(count, 1, side, side)
    return grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def mask_images(images: Tensor, mask: Tensor) -> Tensor:
    """``images`` ``(N, C, H, W)``, already normalised, with the pixels where ``mask``
    ``(N, 1, H, W)`` is 1 set to 0 (the data set's mean after normalisation) in every channel."""
    _check_mask(images, mask)
    return images.masked_fill(mask.bool(), 0.0)


class MAETerms(NamedTuple):
    """The loss and a diagnostic (no gradient needed from it)."""

    loss: Tensor  # mean squared error over the masked pixels, all channels
    visible_mse: Tensor  # the same over the visible pixels (detached)


def masked_reconstruction_loss(reconstruction: Tensor, target: Tensor, mask: Tensor) -> MAETerms:
    """The mean squared error of ``reconstruction`` against ``target`` (both ``(N, C, H, W)``)
    over the pixels where ``mask`` ``(N, 1, H, W)`` is 1, and, detached, over those where it
    is 0; see the module docstring. Errors outside a term's pixels do not enter it at all
    (not even a NaN). A term with no pixels is 0."""
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"expected a reconstruction of the target's shape, got {tuple(reconstruction.shape)}, {tuple(target.shape)}"
        )
    _check_mask(target, mask)
    channels = target.shape[1]
    masked = mask.bool().expand_as(target)
    error = (reconstruction - target).pow(2)
    zero = error.new_zeros(())
    on_masked = torch.where(masked, error, zero).sum()
    loss = on_masked / (mask.sum() * channels).clamp_min(1)
    with torch.no_grad():
        on_visible = torch.where(masked, zero, error).sum()
        visible_mse = on_visible / ((1 - mask).sum() * channels).clamp_min(1)
    return MAETerms(loss, visible_mse)


def _check_mask(images: Tensor, mask: Tensor) -> None:
    if images.dim() != 4 or mask.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(
            f"expected (N, C, H, W) images and an (N, 1, H, W) mask, got {tuple(images.shape)}, {tuple(mask.shape)}"
        )
