"""Pretext tasks: rotation prediction, jigsaw puzzles and relative patch position.

Each task turns an unlabelled image x_i into an input x~_i and a label y_i that the
image itself supplies, and trains the encoder f with a head h on the one loss all three
share, the mean cross-entropy over the task's K classes:

    L = -1/N sum_i log( exp(h(f(x~_i))_{y_i}) / sum_{c=1}^{K} exp(h(f(x~_i))_c) )

* rotation (RotNet, Gidaris et al. 2018): ``y_i = k_i ~ U{0, 1, 2, 3}`` and
  ``x~_i = rot(x_i, 90 k_i degrees)``, counter-clockwise; h is a linear layer (K = 4).
* jigsaw (Noroozi & Favaro 2016): the central square of an image is cut into a 3 x 3
  grid of cells, and from cell p a tile T_ip of side ``t = cell - gap`` at a random
  offset in [0, gap]^2 (the gap keeps the network from matching tile edges). A fixed
  set of K permutations pi_1 .. pi_K (chosen greedily to be far apart in Hamming
  distance ``d(pi, sigma) = #{j : pi(j) != sigma(j)}``) gives ``y_i ~ U{0 .. K-1}`` and
  the shuffled tiles ``S_ij = T_{i, pi_{y_i}(j)}``; h sees the concatenated features
  ``[f(S_i1), .., f(S_i9)]``.
* relative position (Doersch et al. 2015): the centre tile T_i4 and one of its eight
  neighbours T_{i,n(y_i)}, ``y_i ~ U{0 .. 7}`` numbering the neighbours in row-major
  order without the centre (``n(y) = y`` for y < 4, ``y + 1`` otherwise); h sees
  ``[f(T_i4), f(T_{i,n(y_i)})]``.

The functions are pure; every random draw takes an explicit ``torch.Generator`` on the
images' device, so a seeded generator gives the same inputs and labels.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CANDIDATES = 1000  # random candidate permutations per greedy round of ``permutation_set``
ENUMERATE_UP_TO = 40320  # 8!: with at most this many permutations the greedy search considers all of them
CENTRE = 4  # the centre tile of a 3 x 3 grid, row-major
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)  # relative-position label -> tile index


class ClassificationTerms(NamedTuple):
    """The loss and its diagnostic (no gradient)."""

    loss: Tensor  # mean cross-entropy of the pretext labels
    accuracy: Tensor  # fraction of pretext labels predicted right


def classification_terms(logits: Tensor, targets: Tensor) -> ClassificationTerms:
    """The loss of every pretext task: mean cross-entropy of (N, K) logits against (N,) labels."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected (N, K) logits and (N,) targets, got {tuple(logits.shape)}, {tuple(targets.shape)}")
    loss = F.cross_entropy(logits, targets)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return ClassificationTerms(loss, accuracy)


def _check_generator(generator: torch.Generator, tensor: Tensor) -> None:
    if generator.device != tensor.device:
        raise ValueError(f"the generator is on {generator.device} but the images are on {tensor.device}")


def rotate(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each image of an (N, C, H, W) batch turned counter-clockwise by k * 90 degrees (as
    ``torch.rot90(x, k, (2, 3))``), k drawn uniformly from {0, 1, 2, 3} per image; returns
    the turned images and k (long)."""
    if images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"rotation needs an (N, C, H, W) batch of square images, got {tuple(images.shape)}")
    _check_generator(generator, images)
    n, c, h, w = images.shape
    k = torch.randint(4, (n,), generator=generator, device=generator.device)
    grid = torch.arange(h * w, device=images.device).view(1, h, w)
    sources = torch.stack([torch.rot90(grid, r, (1, 2)).flatten(1) for r in range(4)])  # (4, 1, HW): pixel taken
    turned = images.flatten(2).gather(2, sources[k].expand(n, c, h * w))
    return turned.view(n, c, h, w), k


def cut_tiles(images: Tensor, grid: int, gap: int, generator: torch.Generator) -> Tensor:
    """The central square of ``grid * cell`` pixels (``cell = min(H, W) // grid``) cut into
    grid x grid cells, row-major, and from each cell a tile of side ``t = cell - gap`` at an
    offset drawn uniformly from [0, gap]^2 per image and cell; returns (N, grid^2, C, t, t).

    The offsets are one draw ``randint(gap + 1, (N, grid^2, 2))``: row offset, then column offset."""
    if images.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got {tuple(images.shape)}")
    if grid < 1 or gap < 0:
        raise ValueError(f"grid must be >= 1 and gap >= 0, got grid={grid}, gap={gap}")
    n, c, h, w = images.shape
    cell = min(h, w) // grid
    side = cell - gap
    if side < 1:
        raise ValueError(
            f"tile size < 1: {h}x{w} images in a {grid}x{grid} grid give cells of {cell} pixels, "
            f"minus a gap of {gap} leaves {side}"
        )
    _check_generator(generator, images)
    offsets = torch.randint(gap + 1, (n, grid * grid, 2), generator=generator, device=generator.device)
    cells = torch.arange(grid * grid, device=images.device)
    top, left = (h - grid * cell) // 2, (w - grid * cell) // 2
    corner_rows = top + (cells // grid) * cell + offsets[..., 0]  # (N, P)
    corner_cols = left + (cells % grid) * cell + offsets[..., 1]
    steps = torch.arange(side, device=images.device)
    rows = (corner_rows[..., None] + steps)[:, :, None, :, None]  # (N, P, 1, t, 1)
    cols = (corner_cols[..., None] + steps)[:, :, None, None, :]  # (N, P, 1, 1, t)
    image_index = torch.arange(n, device=images.device).view(n, 1, 1, 1, 1)
    channel_index = torch.arange(c, device=images.device).view(1, 1, c, 1, 1)
    return images[image_index, channel_index, rows, cols]


def permutation_set(count: int, pieces: int = 9, seed: int = 0) -> Tensor:
    """(count, pieces) long: Noroozi & Favaro's permutations, chosen greedily far apart.

    The first is ``randperm(pieces)`` of a generator seeded with ``seed``; each next one is,
    of a pool of candidates (all pieces! permutations when there are at most 8!, else
    ``CANDIDATES`` drawn afresh from the generator each round), the one whose minimum
    Hamming distance to those already chosen is largest (the first such on a tie)."""
    if pieces < 2:
        raise ValueError(f"pieces must be >= 2, got {pieces}")
    total = math.factorial(pieces)
    if not 2 <= count <= total:
        raise ValueError(f"count must be in [2, {pieces}! = {total}], got {count}")
    generator = torch.Generator().manual_seed(seed)
    chosen = [torch.randperm(pieces, generator=generator)]
    if total <= ENUMERATE_UP_TO:
        pool = torch.tensor(list(itertools.permutations(range(pieces))))
        nearest = (pool != chosen[0]).sum(dim=1)  # each candidate's distance to the nearest chosen permutation
        while len(chosen) < count:
            best = pool[nearest.argmax()]
            chosen.append(best)
            nearest = torch.minimum(nearest, (pool != best).sum(dim=1))
        return torch.stack(chosen)
    while len(chosen) < count:
        pool = torch.argsort(torch.rand(CANDIDATES, pieces, generator=generator), dim=1)
        placed = F.one_hot(torch.stack(chosen), pieces).flatten(1).float()  # (k, pieces^2): 1 where j -> pi(j)
        matches = F.one_hot(pool, pieces).flatten(1).float() @ placed.T  # positions where they agree
        nearest = pieces - matches.max(dim=1).values
        if nearest.max() > 0:  # else every candidate was already chosen: draw again
            chosen.append(pool[nearest.argmax()])
    return torch.stack(chosen)


def shuffle_tiles(tiles: Tensor, permutations: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Jigsaw: for each image of (N, P, ...) tiles a label drawn uniformly from the K rows of a
    (K, P) permutation set; ``shuffled[i, j] = tiles[i, permutations[label_i, j]]``. Returns
    the shuffled tiles and the labels (long)."""
    if tiles.dim() < 2 or permutations.dim() != 2 or permutations.shape[1] != tiles.shape[1]:
        raise ValueError(
            f"expected (N, P, ...) tiles and (K, P) permutations, got {tuple(tiles.shape)}, {tuple(permutations.shape)}"
        )
    _check_generator(generator, tiles)
    n = len(tiles)
    labels = torch.randint(len(permutations), (n,), generator=generator, device=generator.device)
    order = permutations.to(tiles.device)[labels]  # (N, P)
    return tiles[torch.arange(n, device=tiles.device)[:, None], order], labels


def relative_position_pair(tiles: Tensor, grid: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Relative position of (N, 9, C, t, t) tiles of a 3 x 3 grid: the centre tile, one of its eight
    neighbours drawn uniformly per image, and the label 0..7 of that neighbour (row-major without
    the centre: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right)."""
    if grid != 3:
        raise ValueError(f"relative position needs a 3x3 grid (a centre and its eight neighbours), got grid={grid}")
    if tiles.dim() < 2 or tiles.shape[1] != 9:
        raise ValueError(f"expected (N, 9, ...) tiles of a 3x3 grid, got {tuple(tiles.shape)}")
    _check_generator(generator, tiles)
    n = len(tiles)
    labels = torch.randint(8, (n,), generator=generator, device=generator.device)
    neighbour = labels + (labels >= CENTRE).long()  # skip the centre
    return tiles[:, CENTRE], tiles[torch.arange(n, device=tiles.device), neighbour], labels


class TileClassifier(nn.Module):
    """The head on per-tile features: (N, P, in_dim) concatenated to (N, P * in_dim), then
    ``Linear(P * in_dim, hidden)`` -> ``BatchNorm1d`` -> ``ReLU`` -> ``Linear(hidden, classes)``.
    Jigsaw uses P = 9 and classes = the permutations; relative position P = 2 (centre, then
    neighbour) and classes = 8."""

    def __init__(self, in_dim: int, pieces: int, classes: int, hidden: int = 512) -> None:
        super().__init__()
        self.in_dim, self.pieces = in_dim, pieces
        self.net = nn.Sequential(
            nn.Linear(pieces * in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 3 or features.shape[1:] != (self.pieces, self.in_dim):
            raise ValueError(f"expected (N, {self.pieces}, {self.in_dim}) features, got {tuple(features.shape)}")
        return self.net(features.flatten(1))
