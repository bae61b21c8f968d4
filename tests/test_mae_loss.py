"""MAE-style masking and the masked reconstruction loss against loops over patches and pixels,
against lightly's token masking and its MAE recipe (patchify, pick the masked patches, MSE),
their properties, their errors, and a short training of a tiny ConvNet autoencoder in which
the loss must fall."""

from __future__ import annotations

import pytest
import torch
from lightly.models.utils import get_at_index, patchify, random_token_mask, set_at_index, unpatchify

from lfr_report.ssl.mae import MAETerms, mask_images, masked_reconstruction_loss, patch_mask


def reference_patch_mask(count, image_size, patch, ratio, seed):
    """The same uniform draw as ``patch_mask`` (one per patch, row-major), then per image in
    plain Python: sort the patches by their draw, mask the largest ``round(ratio * patches)``
    (clamped to [1, patches - 1]), and paint every pixel of a masked patch."""
    side = image_size // patch
    patches = side * side
    masked = min(max(round(ratio * patches), 1), patches - 1)
    noise = torch.rand(count, patches, generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for n in range(count):
        order = sorted(range(patches), key=lambda k, row=noise[n]: row[k])
        chosen = set(order[patches - masked :])
        out.append([[float((h // patch) * side + w // patch in chosen) for w in range(image_size)]
                    for h in range(image_size)])  # fmt: skip
    return torch.tensor(out).unsqueeze(1)


@pytest.mark.parametrize(("count", "image_size", "patch", "ratio"), [(3, 8, 2, 0.5), (5, 12, 4, 0.3), (4, 28, 7, 0.75)])
def test_patch_mask_is_the_per_image_loop_over_sorted_noise(count, image_size, patch, ratio):
    got = patch_mask(count, image_size, patch, ratio, torch.Generator().manual_seed(count))
    assert got.shape == (count, 1, image_size, image_size)
    assert got.dtype == torch.float32 and got.device == torch.device("cpu")
    torch.testing.assert_close(got, reference_patch_mask(count, image_size, patch, ratio, count), rtol=0, atol=0)


@pytest.mark.parametrize(("patch", "ratio"), [(7, 0.75), (7, 0.5), (14, 0.5), (2, 0.75)])
def test_patch_mask_is_lightlys_random_token_mask_for_the_same_draw(patch, ratio):
    """lightly draws the same ``torch.rand(batch, patches)`` (from the global generator), keeps the
    ``int(patches * (1 - ratio))`` smallest and masks the rest; with ``mask_class_token=True`` there
    is no class token. It rounds the kept count down, so it masks one patch more than our
    ``round(ratio * patches)`` when that product's fraction is below 1/2 (49 patches at 0.5: 25
    against our 24); the ratios here give whole products, where the two agree. Its
    ``unpatchify`` fixes the patch order (row-major) independently of ours."""
    count, size = 6, 28
    patches = (size // patch) ** 2
    with torch.random.fork_rng():
        torch.manual_seed(11)
        _, index_mask = random_token_mask((count, patches), mask_ratio=ratio, mask_class_token=True)
    tokens = set_at_index(torch.zeros(count, patches, patch * patch), index_mask, torch.ones(1).expand(
        count, index_mask.shape[1], patch * patch))  # fmt: skip
    expected = unpatchify(tokens, patch, channels=1)
    got = patch_mask(count, size, patch, ratio, torch.Generator().manual_seed(11))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("image_size", "patch", "ratio", "expected_patches"),
    [(28, 7, 0.75, 12), (28, 4, 0.5, 24), (8, 2, 0.3, 5), (8, 4, 0.01, 1), (8, 4, 0.99, 3), (28, 14, 0.6, 2)],
)
def test_patch_mask_masks_exactly_the_rounded_count_of_whole_patches_per_image(
    image_size, patch, ratio, expected_patches
):
    count = 50
    mask = patch_mask(count, image_size, patch, ratio, torch.Generator().manual_seed(3))
    side = image_size // patch
    blocks = mask.view(count, side, patch, side, patch).permute(0, 1, 3, 2, 4).reshape(count, side * side, -1)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(blocks.amin(dim=2), blocks.amax(dim=2)), "a patch is partly masked"
    assert blocks[:, :, 0].sum(dim=1).tolist() == [expected_patches] * count
    assert mask.sum(dim=(1, 2, 3)).tolist() == [expected_patches * patch * patch] * count


def test_patch_mask_differs_between_images_and_repeats_for_the_same_seed():
    first = patch_mask(32, 28, 7, 0.5, torch.Generator().manual_seed(5))
    again = patch_mask(32, 28, 7, 0.5, torch.Generator().manual_seed(5))
    other = patch_mask(32, 28, 7, 0.5, torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert len({tuple(m.flatten().tolist()) for m in first}) == 32  # C(16, 8) = 12870 masks: a repeat is unlikely
    generator = torch.Generator().manual_seed(5)
    assert not torch.equal(patch_mask(32, 28, 7, 0.5, generator), patch_mask(32, 28, 7, 0.5, generator))


def test_patch_mask_chooses_every_patch_equally_often():
    """Uniform choice: over 4000 images each of the 16 patches is masked in a quarter of them
    (binomial standard deviation 0.007; the bound is 4 of them)."""
    mask = patch_mask(4000, 16, 4, 0.25, torch.Generator().manual_seed(0))
    frequency = mask[:, 0, ::4, ::4].mean(dim=0)
    assert (frequency - 0.25).abs().max().item() < 0.028


def test_mask_images_zeroes_the_masked_pixels_of_every_channel_and_keeps_the_rest():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 2, 8, 8, generator=g, dtype=torch.float64)
    mask = patch_mask(3, 8, 4, 0.5, g)
    got = mask_images(images, mask)
    for n in range(3):
        for c in range(2):
            for h in range(8):
                for w in range(8):
                    want = 0.0 if mask[n, 0, h, w] == 1 else images[n, c, h, w].item()
                    assert got[n, c, h, w].item() == want
    assert got.dtype == torch.float64


def reference_masked_mse(reconstruction, target, mask):
    """Both terms as plain loops over every pixel and channel (nested lists, no torch)."""
    sums, counts = [0.0, 0.0], [0, 0]
    for n, image in enumerate(target):
        for c, channel in enumerate(image):
            for h, row in enumerate(channel):
                for w, value in enumerate(row):
                    which = 0 if mask[n][0][h][w] == 1 else 1
                    sums[which] += (reconstruction[n][c][h][w] - value) ** 2
                    counts[which] += 1
    return sums[0] / counts[0], sums[1] / counts[1]


@pytest.mark.parametrize(("channels", "patch", "ratio"), [(1, 2, 0.5), (3, 4, 0.75), (2, 2, 0.2)])
def test_masked_reconstruction_loss_is_the_loop_over_masked_and_visible_pixels(channels, patch, ratio):
    g = torch.Generator().manual_seed(channels)
    target = torch.rand(4, channels, 8, 8, generator=g, dtype=torch.float64)
    reconstruction = torch.rand(4, channels, 8, 8, generator=g, dtype=torch.float64)
    mask = patch_mask(4, 8, patch, ratio, g)
    terms = masked_reconstruction_loss(reconstruction, target, mask)
    assert isinstance(terms, MAETerms) and terms._fields[0] == "loss"
    loss, visible = reference_masked_mse(reconstruction.tolist(), target.tolist(), mask.tolist())
    assert terms.loss.item() == pytest.approx(loss, rel=1e-12)
    assert terms.visible_mse.item() == pytest.approx(visible, rel=1e-12)


def test_masked_reconstruction_loss_is_lightlys_mae_recipe():
    """lightly's MAE example: patchify both images, gather the masked patches' tokens, and take
    ``nn.MSELoss`` of them (a mean over the masked patches' pixels and channels)."""
    g = torch.Generator().manual_seed(1)
    target = torch.rand(5, 3, 28, 28, generator=g, dtype=torch.float64)
    reconstruction = torch.rand(5, 3, 28, 28, generator=g, dtype=torch.float64)
    mask = patch_mask(5, 28, 7, 0.75, g)
    index_mask = patchify(mask, 7)[:, :, 0].nonzero()[:, 1].view(5, -1)  # 12 per image, in order
    expected = torch.nn.MSELoss()(get_at_index(patchify(reconstruction, 7), index_mask),
                                  get_at_index(patchify(target, 7), index_mask))  # fmt: skip
    torch.testing.assert_close(masked_reconstruction_loss(reconstruction, target, mask).loss, expected, rtol=1e-12,
                               atol=0)  # fmt: skip


def test_loss_ignores_errors_on_visible_pixels_and_visible_mse_ignores_masked_ones():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(6, 2, 12, 12, generator=g)
    reconstruction = torch.rand(6, 2, 12, 12, generator=g, requires_grad=True)
    mask = patch_mask(6, 12, 3, 0.5, g)
    masked = mask.bool().expand_as(target)
    base = masked_reconstruction_loss(reconstruction, target, mask)
    wild = torch.where(masked, reconstruction.detach(), torch.full_like(target, float("nan")))
    changed_visible = masked_reconstruction_loss(wild, target, mask)
    assert changed_visible.loss.item() == base.loss.item()  # even a NaN on a visible pixel does not enter
    changed_masked = masked_reconstruction_loss(torch.where(masked, 1e3, reconstruction.detach()), target, mask)
    assert changed_masked.visible_mse.item() == base.visible_mse.item()
    assert changed_masked.loss.item() > 1e5
    base.loss.backward()
    assert reconstruction.grad[~masked].abs().max().item() == 0.0
    assert reconstruction.grad[masked].abs().min().item() > 0.0
    assert not base.visible_mse.requires_grad  # a diagnostic: no gradient
    perfect = masked_reconstruction_loss(torch.where(masked, target, 0.0), target, mask)
    assert perfect.loss.item() == 0.0 and perfect.visible_mse.item() > 0


def test_bad_inputs_are_clear_errors():
    g = torch.Generator()
    with pytest.raises(ValueError, match="must divide"):
        patch_mask(2, 28, 5, 0.5, g)
    with pytest.raises(ValueError, match="must divide"):
        patch_mask(2, 28, 0, 0.5, g)
    for ratio in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\)"):
            patch_mask(2, 28, 7, ratio, g)
    with pytest.raises(ValueError, match="one patch"):
        patch_mask(2, 28, 28, 0.5, g)
    images, mask = torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="mask"):
        mask_images(images, torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        mask_images(images, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="target's shape"):
        masked_reconstruction_loss(torch.zeros(2, 3, 8, 4), images, mask)
    with pytest.raises(ValueError, match="mask"):
        masked_reconstruction_loss(images, images, torch.zeros(2, 1, 4, 8))


@pytest.mark.usefixtures("one_thread")
def test_loss_falls_over_20_steps_of_a_tiny_convnet_masked_autoencoder():
    """Encoder input: normalised images with masked patches zeroed; the decoder's sigmoid output
    is compared with the images in [0, 1], on the masked pixels. It must also end below the
    error of predicting the batch's mean pixel everywhere (0.084)."""
    from lfr_report.data import load_dataset, normalise
    from lfr_report.models import build_encoder, encoder_arch
    from lfr_report.models.decoder import ConvNetDecoder

    torch.manual_seed(0)
    data = load_dataset("synthetic", "train")
    images = data.images[:64].float() / 255
    inputs = normalise(images, data.spec.mean, data.spec.std)
    encoder = build_encoder(**encoder_arch("convnet", 1, 16, 28, [8, 16], "avg"))
    decoder = ConvNetDecoder(1, 16, [8, 16], 28)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):
        mask = patch_mask(64, 28, 7, 0.5, generator)
        terms = masked_reconstruction_loss(decoder(encoder(mask_images(inputs, mask))), images, mask)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        losses.append(terms.loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, losses
    assert last < (images - images.mean()).pow(2).mean().item(), losses
