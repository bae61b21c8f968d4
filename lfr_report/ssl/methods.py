"""The self-supervised methods of the lectures as steps of the one training loop
(``lfr_report.ssl.train.train_loop``), so that every method trains the same encoder on the
same batches with the same optimiser, and differs only in what it computes from a batch.

``build(name, encoder, ...)`` returns a ``Method``: the modules the method trains beside the
encoder (heads, projector, predictor, decoder) and those it only keeps (BYOL's target
networks), and its ``step(batch, index)``, which makes the method's inputs from a uint8
batch and returns the objective's terms (``loss`` first). The objectives themselves are
pure functions in their own modules: ``pretext`` (rotation, jigsaw, relative patch
position), ``mae``, ``simclr``, ``byol``, ``vicreg`` and ``barlow``.

Every method starts from the same augmentation (``lfr_report.data.augment``): the two-view
methods compare two views of an image, the one-view methods (the pretext tasks and the
masked reconstruction) take one view and make their own input from it (a rotation, tiles,
a mask).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from lfr_report.data import Augment
from lfr_report.errors import ConfigError
from lfr_report.models import Projector
from lfr_report.models.decoder import ConvNetDecoder
from lfr_report.ssl import byol, mae, pretext
from lfr_report.ssl.barlow import barlow_twins_loss
from lfr_report.ssl.simclr import nt_xent_loss
from lfr_report.ssl.train import TwoViews, two_view_terms
from lfr_report.ssl.vicreg import vicreg_loss

# name -> (family, what it learns from); the report's order
METHODS = {
    "rotation": ("pretext task", "which of four rotations an image was turned by"),
    "jigsaw": ("pretext task", "which permutation shuffled an image's 3x3 tiles"),
    "relative_position": ("pretext task", "where a tile lies relative to the centre tile"),
    "mae": ("masked modelling", "the pixels of masked patches from the visible ones"),
    "simclr": ("contrastive", "which view in the batch is the other view of the same image"),
    "byol": ("non-contrastive", "a momentum encoder's projection of the other view"),
    "vicreg": ("non-contrastive", "invariance between views, with variance and covariance regularisation"),
    "barlow": ("non-contrastive", "a cross-correlation of the two views' projections close to the identity"),
}
TWO_VIEW = ("simclr", "byol", "vicreg", "barlow")


@dataclass(frozen=True)
class Settings:
    """Each method's own hyper-parameters (the config's keys of the same names)."""

    projector_dim: int = 512  # the two-view methods' projector width and output
    projector_layers: int = 3
    temperature: float = 0.5  # SimCLR's tau
    vicreg_weights: tuple[float, float, float] = (25.0, 25.0, 1.0)  # lambda, mu, nu
    barlow_lambda: float = 5e-3
    byol_decay: float = 0.99  # BYOL's base EMA decay of the target, rising to 1 along a cosine
    mask_ratio: float = 0.75  # MAE: share of the patches masked
    mask_patch: int = 4  # MAE: patch side in pixels
    decoder_widths: tuple[int, ...] = (32, 64, 128)  # MAE: the light decoder's blocks
    permutations: int = 64  # jigsaw: size of the fixed permutation set
    tile_gap: int = 2  # jigsaw, relative position: pixels of jitter between a cell and its tile
    head_hidden: int = 512  # jigsaw, relative position: the tile classifier's hidden width


@dataclass
class Method:
    name: str
    trained: dict[str, nn.Module]  # optimised with the encoder (saved in checkpoints)
    kept: dict[str, nn.Module]  # updated otherwise (BYOL's target networks; saved in checkpoints)
    step: Callable[[Tensor, Tensor], Any]  # (uint8 batch on the device, its indices) -> the objective's terms


def build(
    name: str,
    encoder: nn.Module,
    augment: Augment,
    settings: Settings,
    *,
    channels: int,
    image_size: int,
    total_steps: int,
    generator: torch.Generator,
    device: torch.device,
    layout: torch.memory_format = torch.contiguous_format,
) -> Method:
    """The method ``name`` (one of ``METHODS``) for ``encoder`` (its output of size ``encoder.dim``)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")
    s, dim = settings, encoder.dim

    def view(batch: Tensor) -> Tensor:
        return augment(batch, generator).contiguous(memory_format=layout)

    if name in ("simclr", "vicreg", "barlow"):
        projector = Projector(dim, s.projector_dim, s.projector_layers).to(device)
        objective = {
            "simclr": partial(nt_xent_loss, temperature=s.temperature),
            "vicreg": partial(vicreg_loss, lambda_=s.vicreg_weights[0], mu=s.vicreg_weights[1], nu=s.vicreg_weights[2]),
            "barlow": partial(barlow_twins_loss, lambd=s.barlow_lambda),
        }[name]
        pair = TwoViews(encoder, projector)
        return Method(name, {"projector": projector}, {},
                      lambda batch, index: two_view_terms(pair, objective, view(batch), view(batch)))  # fmt: skip

    if name == "byol":
        projector = Projector(dim, s.projector_dim, s.projector_layers).to(device)
        predictor = Projector(s.projector_dim, s.projector_dim, 2).to(device)
        target = nn.ModuleDict({"encoder": copy.deepcopy(encoder), "projector": copy.deepcopy(projector)})
        target.requires_grad_(False)
        target.register_buffer("updates", torch.zeros((), dtype=torch.long, device=device))  # survives a resume

        def byol_step(batch: Tensor, index: Tensor) -> byol.BYOLTerms:
            # the target follows the online networks as they stood after the previous step
            tau = byol.target_decay(int(target.updates), total_steps, s.byol_decay)
            byol.ema_update(target["encoder"], encoder, tau)
            byol.ema_update(target["projector"], projector, tau)
            target.updates += 1
            view_a, view_b = view(batch), view(batch)
            p_a, p_b = (predictor(projector(encoder(v))) for v in (view_a, view_b))
            with torch.no_grad():
                target.train()
                z_a, z_b = (target["projector"](target["encoder"](v)) for v in (view_a, view_b))
            return byol.byol_loss(p_a, p_b, z_a, z_b)

        return Method(name, {"projector": projector, "predictor": predictor}, {"target": target}, byol_step)

    if name == "rotation":
        head = nn.Linear(dim, 4).to(device)

        def rotation_step(batch: Tensor, index: Tensor) -> pretext.ClassificationTerms:
            turned, k = pretext.rotate(view(batch), generator)
            return pretext.classification_terms(head(encoder(turned)), k)

        return Method(name, {"head": head}, {}, rotation_step)

    if name in ("jigsaw", "relative_position"):
        pieces, classes = (9, s.permutations) if name == "jigsaw" else (2, 8)
        head = pretext.TileClassifier(dim, pieces, classes, s.head_hidden).to(device)
        permutations = pretext.permutation_set(s.permutations).to(device) if name == "jigsaw" else None

        def tile_step(batch: Tensor, index: Tensor) -> pretext.ClassificationTerms:
            tiles = pretext.cut_tiles(view(batch), 3, s.tile_gap, generator)
            if permutations is not None:
                shown, label = pretext.shuffle_tiles(tiles, permutations, generator)
            else:
                centre, neighbour, label = pretext.relative_position_pair(tiles, 3, generator)
                shown = torch.stack([centre, neighbour], dim=1)
            features = encoder(shown.flatten(0, 1).contiguous(memory_format=layout)).view(len(shown), pieces, -1)
            return pretext.classification_terms(head(features), label)

        return Method(name, {"head": head}, {}, tile_step)

    # mae
    decoder = ConvNetDecoder(channels, dim, list(s.decoder_widths), image_size).to(device)
    mean, std = augment.mean.to(device), augment.std.to(device)

    def mae_step(batch: Tensor, index: Tensor) -> mae.MAETerms:
        x = view(batch)
        mask = mae.patch_mask(len(x), image_size, s.mask_patch, s.mask_ratio, generator)
        reconstruction = decoder(encoder(mae.mask_images(x, mask).contiguous(memory_format=layout)))
        return mae.masked_reconstruction_loss(reconstruction, x * std + mean, mask)

    return Method(name, {"decoder": decoder}, {}, mae_step)
