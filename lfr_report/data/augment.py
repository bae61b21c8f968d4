"""Batched image augmentations that run on the training device.

``Augment`` takes a whole batch ``(B, C, H, W)`` (uint8 or float in [0, 1]) and returns
one augmented view per image, each image with its own random parameters, using only
batched tensor operations: one ``grid_sample`` for crop + flip, per-image scalars for
colour jitter, one grouped convolution for blur. There is no per-image Python loop.

The default parameters are the course's CIFAR-10 pipeline for the VICReg exercise
(torchvision ``RandomResizedCrop(32, scale=(0.2, 1))``, ``RandomHorizontalFlip()``,
``ColorJitter(0.4, 0.4, 0.2, 0.1)``, ``RandomGrayscale(0.2)``,
``RandomApply([GaussianBlur(3)], p=0.5)``). Differences from torchvision, on purpose:

* the crop's box is drawn once and clamped to the image instead of torchvision's
  ten rejection-sampling tries, and it is resampled with bilinear interpolation;
* colour jitter applies brightness, contrast, saturation, hue in that fixed order
  (torchvision shuffles it per call), and hue is a rotation in YIQ space;
* on one-channel images, saturation, hue and grayscale are no-ops.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfr_report.data.normalise import normalise, to_float

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_CONSTANTS = {
    "luma": torch.tensor(_LUMA).view(1, 3, 1, 1),
    "rgb_to_yiq": _RGB_TO_YIQ,
    "yiq_to_rgb": torch.linalg.inv(_RGB_TO_YIQ),
}


@functools.cache
def _constant(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A constant of this module, copied to ``device`` once rather than once per batch
    (on a GPU each such copy would be a host-to-device transfer in the training loop)."""
    return _CONSTANTS[name].to(device, dtype)


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of the augmentation pipeline; probabilities are per image."""

    size: tuple[int, int] | None = None  # output (H, W); None keeps the input size
    crop_scale: tuple[float, float] = (0.2, 1.0)  # fraction of the image area kept by the crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the crop
    flip_p: float = 0.5
    jitter_p: float = 1.0  # probability of applying colour jitter at all
    brightness: float = 0.4  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1  # fraction of a full turn, drawn from [-h, h]
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_kernel: int = 3  # odd kernel size in pixels
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5  # pixels at or above it are inverted


class Augment:
    """Make one random view of every image in a batch; see the module docstring."""

    def __init__(self, params: AugmentParams, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        if params.blur_kernel % 2 != 1:
            raise ValueError(f"blur_kernel must be odd, got {params.blur_kernel}")
        self.params = params
        self.channel_mean, self.channel_std = tuple(mean), tuple(std)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)  # (1, C, 1, 1), to undo the normalisation of a view
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images`` and normalise them with the dataset's mean and std."""
        x = to_float(images)
        p = self.params
        x = random_resized_crop(x, p.size or tuple(x.shape[-2:]), p.crop_scale, p.crop_ratio, p.flip_p, generator)
        if p.jitter_p > 0:
            x = color_jitter(x, p.brightness, p.contrast, p.saturation, p.hue, p.jitter_p, generator)
        if p.grayscale_p > 0 and x.shape[1] == 3:
            x = torch.where(_coin(x, p.grayscale_p, generator), grayscale(x).expand_as(x), x)
        if p.blur_p > 0:
            x = gaussian_blur(x, p.blur_kernel, p.blur_sigma, p.blur_p, generator)
        if p.solarize_p > 0:
            x = torch.where(_coin(x, p.solarize_p, generator) & (x >= p.solarize_threshold), 1 - x, x)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a batch (float in [0, 1], or uint8) with the dataset's per-channel mean and std."""
        return normalise(x, self.channel_mean, self.channel_std)


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, device=like.device, generator=generator) * (high - low) + low


def _coin(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """A per-image boolean mask, broadcastable over (B, C, H, W), true with probability p."""
    return (torch.rand(x.shape[0], device=x.device, generator=generator) < p).view(-1, 1, 1, 1)


def random_resized_crop(
    x: torch.Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random box of each image (area fraction in ``scale``, aspect in ``ratio``),
    resize it to ``size`` and flip it horizontally with probability ``flip_p``.

    The whole batch is one affine ``grid_sample``: per image, the box's half-widths
    and centre in normalised coordinates make the affine matrix, and a flip negates
    its x scale.
    """
    b = x.shape[0]
    area = _uniform(b, scale[0], scale[1], x, generator)
    log_ratio = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), x, generator)
    aspect = torch.exp(log_ratio)
    h_img, w_img = x.shape[-2:]
    # Box width and height as fractions of the image; aspect is width/height in pixels.
    w = torch.sqrt(area * aspect * h_img / w_img).clamp(max=1.0)
    h = torch.sqrt(area / aspect * w_img / h_img).clamp(max=1.0)
    cx = (torch.rand(b, device=x.device, generator=generator) * (1 - w) + w / 2) * 2 - 1
    cy = (torch.rand(b, device=x.device, generator=generator) * (1 - h) + h / 2) * 2 - 1
    flip = torch.where(torch.rand(b, device=x.device, generator=generator) < flip_p, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB batch, shape (B, 1, H, W); a one-channel batch is returned as is."""
    if x.shape[1] == 1:
        return x
    return (x * _constant("luma", x.device, x.dtype)).sum(dim=1, keepdim=True)


def color_jitter(
    x: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image brightness, contrast, saturation and hue changes, applied with probability p."""
    b = x.shape[0]
    out = x
    if brightness > 0:
        factor = _uniform(b, max(0.0, 1 - brightness), 1 + brightness, x, generator).view(-1, 1, 1, 1)
        out = (out * factor).clamp(0, 1)
    if contrast > 0:
        factor = _uniform(b, max(0.0, 1 - contrast), 1 + contrast, x, generator).view(-1, 1, 1, 1)
        mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * factor + mean).clamp(0, 1)
    if x.shape[1] == 3 and saturation > 0:
        factor = _uniform(b, max(0.0, 1 - saturation), 1 + saturation, x, generator).view(-1, 1, 1, 1)
        gray = grayscale(out)
        out = ((out - gray) * factor + gray).clamp(0, 1)
    if x.shape[1] == 3 and hue > 0:
        angle = _uniform(b, -hue, hue, x, generator) * 2 * math.pi
        out = _rotate_hue(out, angle).clamp(0, 1)
    if p >= 1:
        return out
    return torch.where(_coin(x, p, generator), out, x)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) plane of each image by its angle: a per-image 3x3 colour matrix."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = _constant("yiq_to_rgb", x.device, x.dtype) @ rotation @ _constant("rgb_to_yiq", x.device, x.dtype)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def gaussian_blur(
    x: torch.Tensor,
    kernel_size: int,
    sigma: tuple[float, float],
    p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur each image, with probability p, by a Gaussian of its own sigma drawn from ``sigma``.

    A separable blur done as two grouped convolutions over all (image, channel) pairs.
    """
    b, c, h, w = x.shape
    sigmas = _uniform(b, sigma[0], sigma[1], x, generator)
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - kernel_size // 2
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernels.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernels.view(b * c, 1, -1, 1), groups=b * c)
    return torch.where(_coin(x, p, generator), flat.view(b, c, h, w), x)


def fit_to_shape(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 images resized (bilinear) and converted (gray <-> RGB) to ``shape`` = (C, H, W),
    so one dataset's images can be fed to an encoder trained on another's."""
    channels, height, width = shape
    x = to_float(images)
    if x.shape[1] != channels:
        if {x.shape[1], channels} != {1, 3}:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")
        x = grayscale(x).expand(-1, channels, -1, -1)  # RGB -> luma, or gray replicated to RGB
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
