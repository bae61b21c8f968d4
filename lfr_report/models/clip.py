"""The image-text model of Problem 7.2: an image encoder and a text encoder, each with a
projection head into one shared embedding space.

The assignment uses an ImageNet-pretrained ResNet-50 and a frozen DistilBERT. Offline
neither set of weights is available, so both encoders are small and trained here: the
ConvNet of ``encoders`` for images, and for text a two-layer transformer over word tokens
(learned token and position embeddings, mean pooling over the words).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Linear -> GELU -> Linear -> dropout, a residual connection around the last three,
    LayerNorm: the projection head of Simple CLIP, which the problem's code builds on."""

    def __init__(self, in_dim: int, dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        projected = self.project(x)
        return self.norm(projected + self.mix(projected))


class TextEncoder(nn.Module):
    """Token ids (B, L), 0 = padding -> (B, dim): a small transformer, mean-pooled over words."""

    def __init__(self, vocabulary_size: int, max_length: int, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocabulary_size, dim, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(1, max_length, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.dim = dim

    def forward(self, ids: Tensor) -> Tensor:
        pad = ids == 0
        x = self.transformer(self.tokens(ids) + self.positions[:, : ids.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1)


class ImageTextModel(nn.Module):
    """``embed_images`` and ``embed_texts`` map into the shared space (not yet normalised;
    the loss normalises)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: TextEncoder, dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_head = ProjectionHead(image_encoder.dim, dim, dropout)
        self.text_head = ProjectionHead(text_encoder.dim, dim, dropout)

    def embed_images(self, images: Tensor) -> Tensor:
        return self.image_head(self.image_encoder(images))

    def embed_texts(self, ids: Tensor) -> Tensor:
        return self.text_head(self.text_encoder(ids))

    def image_embedder(self) -> nn.Sequential:
        """``embed_images`` as one module (sharing the weights), for ``evaluate.encode``."""
        return nn.Sequential(self.image_encoder, self.image_head)
