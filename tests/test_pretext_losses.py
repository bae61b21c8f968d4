"""The pretext tasks (rotation, jigsaw, relative position) against direct per-image loops,
their draws (seeded, covering every class), the greedy permutation set against brute force
and random sets, clear errors, and for each task a short optimisation in which the loss falls."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lfr_report.ssl.pretext import (
    ClassificationTerms,
    TileClassifier,
    classification_terms,
    cut_tiles,
    permutation_set,
    relative_position_pair,
    rotate,
    shuffle_tiles,
)

# the neighbours numbered row-major without the centre: label -> (row, column) offset from the centre tile
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread

NEIGHBOUR_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def min_hamming(perms: torch.Tensor) -> int:
    rows = perms.tolist()
    return min(sum(a != b for a, b in zip(p, q, strict=True)) for p, q in itertools.combinations(rows, 2))


# ---------------------------------------------------------------- the loss


def test_classification_terms_match_a_log_softmax_loop():
    g = seeded(0)
    logits = torch.randn(13, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(5, (13,), generator=g)
    expected_loss, right = 0.0, 0
    for row, target in zip(logits.tolist(), targets.tolist(), strict=True):
        log_normaliser = math.log(sum(math.exp(v) for v in row))
        expected_loss -= (row[target] - log_normaliser) / 13  # minus the log-softmax of the label, averaged
        right += max(range(5), key=lambda c, row=row: row[c]) == target
    terms = classification_terms(logits, targets)
    assert isinstance(terms, ClassificationTerms) and terms._fields[0] == "loss"
    assert terms.loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert terms.accuracy.item() == pytest.approx(right / 13)
    assert terms.loss.requires_grad and not terms.accuracy.requires_grad


def test_accuracy_is_one_when_every_label_has_the_largest_logit():
    targets = torch.tensor([2, 0, 1, 1])
    logits = torch.nn.functional.one_hot(targets, 3).float() * 5
    terms = classification_terms(logits, targets)
    assert terms.accuracy.item() == 1.0
    assert terms.loss.item() == pytest.approx(-math.log(math.exp(5) / (math.exp(5) + 2)), rel=1e-6)


# ---------------------------------------------------------------- rotation


def test_rotate_turns_each_image_as_rot90_does_by_its_label():
    images = torch.randn(32, 2, 6, 6, generator=seeded(1), dtype=torch.float64)
    turned, k = rotate(images, seeded(2))
    assert k.dtype == torch.long and k.shape == (32,) and set(k.tolist()) <= {0, 1, 2, 3}
    assert turned.shape == images.shape
    for i in range(32):
        torch.testing.assert_close(turned[i], torch.rot90(images[i], int(k[i]), (1, 2)), rtol=0, atol=0)


def test_rotate_draws_all_four_turns_about_equally_and_repeats_with_the_seed():
    images = torch.randn(512, 1, 4, 4, generator=seeded(3))
    turned, k = rotate(images, seeded(4))
    counts = torch.bincount(k, minlength=4)
    assert counts.min() > 88 and counts.max() < 168, counts  # 128 each expected, sd about 10
    again, k_again = rotate(images, seeded(4))
    assert torch.equal(turned, again) and torch.equal(k, k_again)
    assert not torch.equal(k, rotate(images, seeded(5))[1])


# ---------------------------------------------------------------- tiles


def test_each_tile_is_a_slice_of_its_cell_at_an_offset_within_the_gap():
    """28 x 30 images, grid 3, gap 2: the central 27 x 27 square starts at row 0, column 1;
    cells of 9, tiles of 7. Random pixels make the matching offset unique; it is the drawn one."""
    images = torch.randn(6, 2, 28, 30, generator=seeded(6), dtype=torch.float64)
    tiles = cut_tiles(images, grid=3, gap=2, generator=seeded(7))
    assert tiles.shape == (6, 9, 2, 7, 7)
    found = torch.zeros(6, 9, 2, dtype=torch.long)
    for i in range(6):
        for p in range(9):
            top, left = 0 + (p // 3) * 9, 1 + (p % 3) * 9
            matches = [
                (a, b)
                for a in range(3)
                for b in range(3)
                if torch.equal(tiles[i, p], images[i, :, top + a : top + a + 7, left + b : left + b + 7])
            ]
            assert len(matches) == 1, (i, p, matches)
            found[i, p] = torch.tensor(matches[0])
    assert torch.equal(found, torch.randint(3, (6, 9, 2), generator=seeded(7)))  # the documented draw


def test_tiles_without_a_gap_tile_the_central_square_exactly():
    """31 x 29 images, grid 4: cells of 7, so the central 28 x 28 square starts at row 1, column 0."""
    images = torch.randn(3, 2, 31, 29, generator=seeded(8))
    tiles = cut_tiles(images, grid=4, gap=0, generator=seeded(9))
    assert tiles.shape == (3, 16, 2, 7, 7)
    square = torch.empty(3, 2, 28, 28)
    for i in range(3):
        for p in range(16):
            r, c = divmod(p, 4)
            square[i, :, r * 7 : (r + 1) * 7, c * 7 : (c + 1) * 7] = tiles[i, p]
    assert torch.equal(square, images[:, :, 1:29, 0:28])


def test_tile_offsets_cover_the_gap_about_uniformly_and_repeat_with_the_seed():
    """Images whose two channels hold each pixel's row and column: a tile's corner is its position."""
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images = torch.stack([rows, cols]).expand(256, 2, 28, 28)
    tiles = cut_tiles(images, grid=3, gap=2, generator=seeded(10))
    corner = tiles[:, :, :, 0, 0].long()  # (N, 9, 2)
    cell_origin = torch.tensor([[(p // 3) * 9, (p % 3) * 9] for p in range(9)])
    offsets = corner - cell_origin
    assert offsets.min() == 0 and offsets.max() == 2
    counts = torch.bincount((offsets[..., 0] * 3 + offsets[..., 1]).flatten(), minlength=9)
    assert counts.min() > 196 and counts.max() < 316, counts  # 256 each expected, sd about 15
    assert torch.equal(tiles, cut_tiles(images, 3, 2, seeded(10)))
    assert not torch.equal(tiles, cut_tiles(images, 3, 2, seeded(11)))


# ---------------------------------------------------------------- permutations


def reference_greedy(count, pieces, seed):
    """The greedy search over all pieces! permutations, written as plain loops (first best wins)."""
    chosen = [tuple(torch.randperm(pieces, generator=seeded(seed)).tolist())]
    while len(chosen) < count:

        def nearest(candidate):
            return min(sum(a != b for a, b in zip(candidate, c, strict=True)) for c in chosen)

        chosen.append(max(itertools.permutations(range(pieces)), key=nearest))  # max keeps the first of ties
    return chosen


@pytest.mark.parametrize(("count", "pieces", "seed"), [(2, 3, 0), (6, 3, 1), (10, 4, 2), (24, 4, 0), (30, 5, 3)])
def test_permutation_set_of_few_pieces_is_the_greedy_search_over_all_permutations(count, pieces, seed):
    assert permutation_set(count, pieces, seed).tolist() == [list(p) for p in reference_greedy(count, pieces, seed)]


@pytest.mark.parametrize(("count", "pieces", "seed"), [(64, 9, 0), (100, 9, 5), (40, 7, 1), (24, 4, 0)])
def test_permutation_set_is_deterministic_and_its_rows_are_distinct_permutations(count, pieces, seed):
    perms = permutation_set(count, pieces, seed)
    assert perms.dtype == torch.long and perms.shape == (count, pieces)
    assert torch.equal(perms.sort(dim=1).values, torch.arange(pieces).expand(count, pieces))
    assert len({tuple(row) for row in perms.tolist()}) == count
    assert torch.equal(perms, permutation_set(count, pieces, seed))
    if count < math.factorial(pieces):
        assert not torch.equal(perms, permutation_set(count, pieces, seed + 1))


def test_permutation_set_is_farther_apart_than_random_permutations():
    """Greedy 64 or 100 of 9 pieces keep every pair at least 6 apart; 64 random ones manage about 3."""
    assert min_hamming(permutation_set(64, 9, 0)) >= 6
    assert min_hamming(permutation_set(100, 9, 0)) >= 6
    random_sets = [torch.stack([torch.randperm(9, generator=g) for _ in range(64)]) for g in map(seeded, range(10))]
    assert max(min_hamming(perms) for perms in random_sets) < 6
    assert min_hamming(permutation_set(2, 9, 0)) == 9  # the second is a derangement of the first


# ---------------------------------------------------------------- jigsaw and relative position


def test_shuffle_tiles_reorders_each_image_by_its_drawn_permutation():
    tiles = torch.randn(16, 9, 2, 3, 3, generator=seeded(12))
    perms = permutation_set(10)
    shuffled, labels = shuffle_tiles(tiles, perms, seeded(13))
    assert labels.dtype == torch.long and shuffled.shape == tiles.shape
    restored = torch.empty_like(tiles)
    for i in range(16):
        order = perms[labels[i]].tolist()
        for j in range(9):
            assert torch.equal(shuffled[i, j], tiles[i, order[j]])
            restored[i, order[j]] = shuffled[i, j]
    assert torch.equal(restored, tiles)


def test_shuffle_tiles_draws_every_permutation_and_repeats_with_the_seed():
    tiles = torch.randn(512, 9, 1, 2, 2, generator=seeded(14))
    perms = permutation_set(8)
    shuffled, labels = shuffle_tiles(tiles, perms, seeded(15))
    counts = torch.bincount(labels, minlength=8)
    assert len(counts) == 8 and counts.min() > 34 and counts.max() < 94, counts  # 64 each, sd about 7.5
    again, labels_again = shuffle_tiles(tiles, perms, seeded(15))
    assert torch.equal(shuffled, again) and torch.equal(labels, labels_again)


def test_relative_position_pairs_the_centre_with_the_neighbour_its_label_names():
    tiles = torch.randn(64, 9, 2, 3, 3, generator=seeded(16))
    centre, neighbour, labels = relative_position_pair(tiles, 3, seeded(17))
    assert labels.dtype == torch.long and centre.shape == neighbour.shape == (64, 2, 3, 3)
    for i in range(64):
        assert torch.equal(centre[i], tiles[i, 4])
        (index,) = [q for q in range(9) if torch.equal(tiles[i, q], neighbour[i])]
        assert index != 4
        assert (index // 3 - 1, index % 3 - 1) == NEIGHBOUR_OFFSETS[labels[i]]


def test_relative_position_draws_all_eight_neighbours_and_repeats_with_the_seed():
    tiles = torch.randn(512, 9, 1, 2, 2, generator=seeded(18))
    _, neighbour, labels = relative_position_pair(tiles, 3, seeded(19))
    counts = torch.bincount(labels, minlength=8)
    assert len(counts) == 8 and counts.min() > 34 and counts.max() < 94, counts
    _, neighbour_again, labels_again = relative_position_pair(tiles, 3, seeded(19))
    assert torch.equal(neighbour, neighbour_again) and torch.equal(labels, labels_again)


def test_tile_classifier_concatenates_the_tiles_features_in_order():
    torch.manual_seed(0)
    head = TileClassifier(in_dim=4, pieces=3, classes=5, hidden=8).eval()
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 8), (8, 5)]
    (bn,) = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    features = torch.randn(6, 3, 4)
    logits = head(features)
    assert logits.shape == (6, 5)
    first, second = linears
    concatenated = torch.cat([features[:, 0], features[:, 1], features[:, 2]], dim=1)
    torch.testing.assert_close(logits, second(torch.relu(bn(first(concatenated)))))
    assert not torch.allclose(head(features.flip(1)), logits)  # the order of the tiles matters
    with pytest.raises(ValueError, match=r"expected \(N, 3, 4\) features"):
        head(torch.randn(6, 2, 4))


# ---------------------------------------------------------------- learning


def fit_pretext(task: str, steps: int = 20) -> list[float]:
    """Fit a tiny ConvNet and the task's head to one fixed pretext batch of 64 synthetic images.

    The batch's draws are fixed: the synthetic gratings look the same turned by 180 degrees
    (and vertical ones turned by 90 look like horizontal ones), so fresh rotations each step
    would leave nothing to learn in 20 steps; a fixed batch checks that the gradient reaches
    the encoder and the head through each task's inputs and loss."""
    from lfr_report.data import load_dataset
    from lfr_report.models import build_encoder, encoder_arch

    torch.manual_seed(0)
    images = load_dataset("synthetic", "train").images[:64].float() / 255
    encoder = build_encoder(**encoder_arch("convnet", 1, 16, 28, [8, 16], "avg"))
    g = seeded(1)
    if task == "rotation":
        head: torch.nn.Module = torch.nn.Linear(16, 4)
        inputs, labels = rotate(images, g)

        def logits():
            return head(encoder(inputs))
    elif task == "jigsaw":
        perms = permutation_set(16)
        head = TileClassifier(16, 9, len(perms))
        inputs, labels = shuffle_tiles(cut_tiles(images, 3, 2, g), perms, g)

        def logits():
            return head(encoder(inputs.flatten(0, 1)).view(len(inputs), 9, -1))
    else:
        head = TileClassifier(16, 2, 8)
        centre, neighbour, labels = relative_position_pair(cut_tiles(images, 3, 2, g), 3, g)

        def logits():
            return head(encoder(torch.cat([centre, neighbour])).view(2, len(centre), -1).transpose(0, 1))

    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    history = []
    for _ in range(steps):
        terms = classification_terms(logits(), labels)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        history.append((terms.loss.item(), terms.accuracy.item()))
    return history


def assert_learns(history: list[tuple[float, float]], margin: float, chance: float) -> None:
    first, last = sum(h[0] for h in history[:5]) / 5, sum(h[0] for h in history[-5:]) / 5
    assert last < first - margin, (first, last)
    assert history[-1][1] > 2 * chance, history[-1]


def test_rotation_loss_falls_over_20_steps():
    assert_learns(fit_pretext("rotation"), margin=0.3, chance=1 / 4)


def test_jigsaw_loss_falls_over_20_steps():
    assert_learns(fit_pretext("jigsaw"), margin=1.0, chance=1 / 16)


def test_relative_position_loss_falls_over_20_steps():
    assert_learns(fit_pretext("relative position"), margin=0.8, chance=1 / 8)


# ---------------------------------------------------------------- errors


def test_bad_inputs_are_clear_errors():
    g = seeded(0)
    with pytest.raises(ValueError, match="square images"):
        rotate(torch.zeros(2, 1, 28, 27), g)
    with pytest.raises(ValueError, match="tile size < 1"):
        cut_tiles(torch.zeros(2, 1, 28, 28), grid=3, gap=9, generator=g)
    with pytest.raises(ValueError, match="tile size < 1"):
        cut_tiles(torch.zeros(2, 1, 28, 28), grid=30, gap=0, generator=g)
    with pytest.raises(ValueError, match=r"count must be in \[2, 3! = 6\]"):
        permutation_set(7, pieces=3)
    with pytest.raises(ValueError, match="count must be"):
        permutation_set(1)
    with pytest.raises(ValueError, match="needs a 3x3 grid"):
        relative_position_pair(torch.zeros(2, 16, 1, 3, 3), 4, g)
    with pytest.raises(ValueError, match="permutations"):
        shuffle_tiles(torch.zeros(2, 4, 1, 3, 3), permutation_set(5), g)
