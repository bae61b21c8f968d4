"""Batched augmentations: shapes, exact behaviour of each op in its limit, per-image randomness."""

from __future__ import annotations

import torch

from lfr_report.data import Augment, AugmentParams
from lfr_report.data.augment import color_jitter, gaussian_blur, grayscale, random_resized_crop

OFF = AugmentParams(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_p=0.0,
    jitter_p=0.0,
    grayscale_p=0.0,
    blur_p=0.0,
)


def _images(b=8, c=3, h=16, w=16, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_identity_settings_return_the_input():
    x = _images()
    out = Augment(OFF, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_uint8_input_is_scaled_and_normalised():
    x = (_images(c=1) * 255).round().to(torch.uint8)
    out = Augment(OFF, mean=(0.5,), std=(0.25,))(x)
    torch.testing.assert_close(out, (x.float() / 255 - 0.5) / 0.25, atol=1e-5, rtol=0)


def test_flip_with_probability_one_mirrors_every_image():
    x = _images()
    out = random_resized_crop(x, (16, 16), (1.0, 1.0), (1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)


def test_crop_resizes_to_the_requested_size_and_zooms_in():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 1.0  # a bright centre square covering a quarter of the area
    out = random_resized_crop(
        x,
        (20, 20),
        (0.25, 0.25),
        (1.0, 1.0),
        flip_p=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (4, 1, 20, 20)
    # A crop of a quarter of the area magnifies by 2: the bright part covers more than in the input.
    assert out.mean() > x.mean()


def test_each_image_gets_its_own_parameters():
    x = _images(b=1).expand(16, -1, -1, -1).contiguous()  # sixteen copies of one image
    out = Augment(AugmentParams(), mean=(0.0,) * 3, std=(1.0,) * 3)(x, torch.Generator().manual_seed(0))
    distinct = {tuple(v.flatten()[:20].tolist()) for v in out}
    assert len(distinct) == 16


def test_same_generator_seed_gives_the_same_views():
    x = _images()
    augment = Augment(AugmentParams(solarize_p=0.3), mean=(0.0,) * 3, std=(1.0,) * 3)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_grayscale_makes_channels_equal_and_uses_luma():
    x = _images()
    out = Augment(AugmentParams(**{**OFF.__dict__, "grayscale_p": 1.0}), (0.0,) * 3, (1.0,) * 3)(x)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-5, rtol=0)
    assert grayscale(x[:, :1]) is not None and grayscale(x[:, :1]).shape == (8, 1, 16, 16)


def test_solarize_inverts_bright_pixels_only():
    x = _images(c=1)
    out = Augment(AugmentParams(**{**OFF.__dict__, "solarize_p": 1.0}), (0.0,), (1.0,))(x)
    torch.testing.assert_close(out, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)


def test_brightness_scales_each_image_by_one_factor():
    x = _images(c=1) * 0.5 + 0.1  # stays inside [0, 1] after scaling by up to 1.4
    out = color_jitter(
        x,
        brightness=0.4,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        generator=torch.Generator().manual_seed(1),
    )
    ratio = out / x
    per_image = ratio.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5, rtol=0)
    assert ((per_image[:, 0] >= 0.6 - 1e-6) & (per_image[:, 0] <= 1.4 + 1e-6)).all()
    assert per_image[:, 0].std() > 0  # different factors for different images


def test_hue_rotation_keeps_gray_pixels_gray():
    gray = torch.full((4, 3, 8, 8), 0.4)
    out = color_jitter(gray, 0.0, 0.0, 0.0, hue=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, gray, atol=1e-5, rtol=0)


def test_blur_keeps_constant_images_and_smooths_noise():
    constant = torch.full((3, 1, 10, 10), 0.7)
    torch.testing.assert_close(gaussian_blur(constant, 3, (0.5, 2.0), p=1.0), constant)
    noise = _images(c=1, h=32, w=32)
    blurred = gaussian_blur(noise, 3, (1.0, 2.0), p=1.0, generator=torch.Generator().manual_seed(0))
    assert blurred.std() < noise.std()
    torch.testing.assert_close(blurred.mean(), noise.mean(), atol=0.01, rtol=0)


def test_output_stays_finite_on_large_batches():
    x = (torch.rand(256, 3, 32, 32) * 255).to(torch.uint8)
    out = Augment(AugmentParams(solarize_p=0.2), (0.5,) * 3, (0.25,) * 3)(x, torch.Generator().manual_seed(0))
    assert out.shape == (256, 3, 32, 32) and torch.isfinite(out).all()
