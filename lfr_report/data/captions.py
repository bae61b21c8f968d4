"""Captions for labelled images, offline: the class name in a sentence template.

Problem 7.2 pairs images with captions written by people; offline we have only class
labels, so each training image gets one of ``TEMPLATES`` filled with its class name,
drawn afresh every epoch. Captions therefore tell classes apart and nothing more: about
one caption in ten of a batch describes an image as well as its own does.
"""

from __future__ import annotations

import re

import torch

TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a black and white photo of a {}",
    "a small {}",
    "a {} on a plain background",
    "a close up photo of the {}",
    "this is a {}",
)
PAD, UNKNOWN = "<pad>", "<unk>"


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: 'T-shirt/top' -> ['t', 'shirt', 'top']."""
    return re.findall(r"[a-z0-9]+", text.lower())


def caption(template: int, class_name: str) -> str:
    return TEMPLATES[template].format(class_name.lower())


class Vocabulary:
    """Word <-> index over the templates and class names; unseen words map to ``<unk>``."""

    def __init__(self, class_names: tuple[str, ...] | list[str]) -> None:
        seen = [w for t in TEMPLATES for w in words(t.format(""))] + [w for c in class_names for w in words(c)]
        self.words = [PAD, UNKNOWN, *dict.fromkeys(seen)]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_length = max(len(words(caption(t, c))) for t in range(len(TEMPLATES)) for c in class_names)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: list[str], length: int | None = None) -> torch.Tensor:
        """(len(texts), length) token ids, padded with 0; longer texts are cut."""
        length = length or self.max_length
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in words(text)][:length]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def unknown(self, text: str) -> list[str]:
        """The words of ``text`` the vocabulary lacks (the text encoder never saw them)."""
        return [w for w in words(text) if w not in self.index]


def caption_tokens(vocabulary: Vocabulary, class_names: tuple[str, ...] | list[str]) -> torch.Tensor:
    """(templates, classes, length) token ids of every caption, so a batch's captions are a lookup."""
    return torch.stack([vocabulary.encode([caption(t, c) for c in class_names]) for t in range(len(TEMPLATES))])
