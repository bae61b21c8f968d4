"""The symmetric contrastive image-text loss of Problem Set 7, equations (1)-(3).

For a batch of N image embeddings I_i and their captions' text embeddings T_i,

    L^{I,T} = -1/N sum_i log( exp(I_i . T_i / tau) / sum_j exp(I_i . T_j / tau) )   (1)
    L^{T,I} = -1/N sum_i log( exp(T_i . I_i / tau) / sum_j exp(T_i . I_j / tau) )   (3)
    L       = (L^{I,T} + L^{T,I}) / 2                                                (2)

so the first term's denominator runs over the batch's captions and the second's over
its images. The embeddings are L2-normalised first, as CLIP does (the dot products are
then cosine similarities and tau sets the logits' range); the equations themselves do
not say, and without it the loss can fall by growing the embeddings' norms.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lfr_report.data.normalise import normalise
from lfr_report.models.clip import ImageTextModel
from lfr_report.ssl.train import LogFn, train_loop


class ClipTerms(NamedTuple):
    loss: Tensor  # equation (2)
    image_to_text: Tensor  # equation (1)
    text_to_image: Tensor  # equation (3)
    top1: Tensor  # fraction of images whose own caption is their most similar one in the batch


def clip_loss(image: Tensor, text: Tensor, temperature: float = 0.1) -> ClipTerms:
    """Equations (1)-(3) for (N, d) image and text embeddings, row i of each one pair."""
    if image.shape != text.shape or image.dim() != 2:
        raise ValueError(f"expected two (N, d) embeddings of one shape, got {tuple(image.shape)}, {tuple(text.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / temperature
    target = torch.arange(len(image), device=image.device)
    image_to_text = F.cross_entropy(logits, target)  # row i: image i against every caption
    text_to_image = F.cross_entropy(logits.T, target)  # row i: caption i against every image
    with torch.no_grad():
        top1 = (logits.argmax(dim=1) == target).float().mean()
    return ClipTerms((image_to_text + text_to_image) / 2, image_to_text, text_to_image, top1)


def caption_batch(tokens: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
    """Token ids of one caption per image: a template drawn at random, filled with its class.

    ``tokens`` is ``caption_tokens(...)``: (templates, classes, length).
    """
    templates = torch.randint(len(tokens), (len(labels),), generator=generator, device=generator.device)
    return tokens[templates.to(tokens.device), labels.to(tokens.device)]


def train_clip(
    model: ImageTextModel,
    images: Tensor,
    labels: Tensor,
    tokens: Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    generator: torch.Generator,
    device: torch.device,
    log: LogFn,
    test: tuple[Tensor, Tensor] | None = None,
    progress: bool = True,
    checkpoint: Path | None = None,
) -> float:
    """Adam on ``clip_loss`` over uint8 ``images``, each paired with a fresh caption of its
    class every epoch. Logs ``train_loss``, ``train_loss_image_to_text``,
    ``train_loss_text_to_image`` and ``train_top1`` (epoch means), and with ``test``
    (held-out images, labels) ``test_loss`` and ``test_top1`` after each epoch.
    With ``checkpoint`` it saves after every epoch and resumes from it (see ``train_loop``).
    Returns the last training loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    images, labels, tokens = images.to(device), labels.to(device), tokens.to(device)

    def step(batch: tuple[Tensor, Tensor], index: Tensor) -> dict[str, Tensor]:
        x, text = normalise(batch[0], mean, std), caption_batch(tokens, batch[1], generator)
        terms = clip_loss(model.embed_images(x), model.embed_texts(text), temperature)
        return {"loss": terms.loss, "loss_image_to_text": terms.image_to_text,
                "loss_text_to_image": terms.text_to_image, "top1": terms.top1}  # fmt: skip

    def evaluate(epoch: int) -> dict[str, float]:
        terms = evaluate_clip(model, *test, tokens, mean=mean, std=std, batch_size=batch_size,
                              temperature=temperature, device=device)  # fmt: skip
        return {"loss": terms.loss.item(), "top1": terms.top1.item()}

    # Per-epoch means over whole batches (N negatives each), each batch alike, as this run has always logged.
    result = train_loop(
        step, (images, labels), modules={"model": model}, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
        device=device, generator=generator, log=log, evaluate=None if test is None else evaluate,
        checkpoint=checkpoint, log_every=None, epoch_mean="batches", progress=progress,
    )  # fmt: skip
    return result.last_train_terms.get("loss", float("nan"))


@torch.no_grad()
def evaluate_clip(
    model: ImageTextModel,
    images: Tensor,
    labels: Tensor,
    tokens: Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    temperature: float,
    device: torch.device,
    seed: int = 0,
) -> ClipTerms:
    """``clip_loss`` terms averaged over whole batches of held-out images, in order, with
    captions drawn with ``seed`` (the same captions every call)."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = tokens.to(device)
    sums, batches = torch.zeros(4, device=device), 0
    for start in range(0, len(images) - batch_size + 1, batch_size):
        x = normalise(images[start : start + batch_size].to(device), mean, std)
        text = caption_batch(tokens, labels[start : start + batch_size].to(device), generator)
        sums += torch.stack(list(clip_loss(model.embed_images(x), model.embed_texts(text), temperature)))
        batches += 1
    if batches == 0:
        raise ValueError(f"need at least one batch of {batch_size} held-out images, got {len(images)}")
    return ClipTerms(*(sums / batches))
