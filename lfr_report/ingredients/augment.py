"""The ``augment`` ingredient: the random views of the two-view objectives."""

from __future__ import annotations

from sacred import Ingredient

from lfr_report.checks import Check, declare, interval, pair, positive, positive_int
from lfr_report.data import Augment, AugmentParams, DatasetSpec

augment_ingredient = Ingredient("augment")


# fmt: off
@augment_ingredient.config
def config():
    # Defaults: the course's CIFAR-10 pipeline for the VICReg exercise.
    crop_scale = (0.2, 1.0)  # RandomResizedCrop: fraction of the image area kept
    crop_ratio = (3 / 4, 4 / 3)  # RandomResizedCrop: aspect ratio range
    flip_p = 0.5  # horizontal flip probability
    jitter_p = 1.0  # probability of colour jitter (the course applies it always)
    brightness = 0.4  # factor in [1 - b, 1 + b]
    contrast = 0.4  # factor in [1 - c, 1 + c]
    saturation = 0.2  # RGB only
    hue = 0.1  # fraction of a turn, RGB only
    grayscale_p = 0.2  # RGB only
    blur_p = 0.5  # probability of a Gaussian blur
    blur_kernel = 3  # blur kernel size in pixels (odd)
    blur_sigma = (0.1, 2.0)  # blur sigma range in pixels
    solarize_p = 0.0  # probability of solarization (not in the course's pipeline)
    solarize_threshold = 0.5  # pixels at or above it (in [0, 1]) are inverted
# fmt: on

_probability = interval("[0, 1]")
declare(augment_ingredient, {
    "crop_scale": pair(interval("(0, 1]")), "crop_ratio": pair(positive), "flip_p": _probability,
    "jitter_p": _probability, "brightness": interval("[0, 1]"), "contrast": interval("[0, 1]"),
    "saturation": interval("[0, 1]"), "hue": interval("[0, 0.5]"), "grayscale_p": _probability,
    "blur_p": _probability, "blur_kernel": Check("an odd positive integer", lambda v: positive_int.test(v) and v % 2),
    "blur_sigma": pair(positive), "solarize_p": _probability, "solarize_threshold": interval("[0, 1]"),
})  # fmt: skip


@augment_ingredient.capture
def build_augment(
    spec: DatasetSpec,
    crop_scale, crop_ratio, flip_p, jitter_p, brightness, contrast, saturation, hue,
    grayscale_p, blur_p, blur_kernel, blur_sigma, solarize_p, solarize_threshold,
) -> Augment:  # fmt: skip
    """The batched augmentation for ``spec``'s images, normalising with its mean and std."""
    params = AugmentParams(
        crop_scale=tuple(crop_scale), crop_ratio=tuple(crop_ratio), flip_p=flip_p, jitter_p=jitter_p,
        brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, grayscale_p=grayscale_p,
        blur_p=blur_p, blur_kernel=blur_kernel, blur_sigma=tuple(blur_sigma), solarize_p=solarize_p,
        solarize_threshold=solarize_threshold,
    )  # fmt: skip
    return Augment(params, spec.mean, spec.std)
