"""Evaluations of an image-text embedding: zero-shot classification and text-to-image
retrieval (Problem 7.2's "top k images for a query"). Similarity is the cosine of the
two embeddings, the dot product the loss trains after L2 normalisation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lfr_report.data.captions import words


def similarities(queries: Tensor, images: Tensor) -> Tensor:
    """(Q, N) cosine similarities of Q text embeddings against N image embeddings."""
    return F.normalize(queries, dim=1) @ F.normalize(images, dim=1).T


def zero_shot_accuracy(images: Tensor, class_texts: Tensor, labels: Tensor) -> float:
    """Share of images whose most similar class caption (row c of ``class_texts``) is their class."""
    return float((similarities(images, class_texts).argmax(dim=1) == labels).float().mean())


def retrieve(queries: Tensor, images: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Indices (Q, k) of each query's k most similar images, best first, and their similarities."""
    scores, index = similarities(queries, images).topk(min(k, len(images)), dim=1)
    return index, scores


def query_class(query: str, class_names: tuple[str, ...] | list[str]) -> int | None:
    """The class a query names (all of its name's words occur in the query; the longest
    such name wins), or None: 'a sneaker in the park' -> the index of 'Sneaker'."""
    said = set(words(query))
    named = [(len(words(c)), i) for i, c in enumerate(class_names) if set(words(c)) <= said]
    return max(named)[1] if named else None
