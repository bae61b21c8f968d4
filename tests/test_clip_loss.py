"""The image-text loss (equations (1)-(3) of Problem Set 7) against a direct loop over i and
j, and the pieces around it: captions, zero-shot classification, retrieval."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lfr_report.data.captions import TEMPLATES, Vocabulary, caption_tokens, words
from lfr_report.evaluate.image_text import query_class, retrieve, zero_shot_accuracy
from lfr_report.models.clip import ImageTextModel, TextEncoder
from lfr_report.ssl.clip import caption_batch, clip_loss


def reference_loss(image: torch.Tensor, text: torch.Tensor, tau: float) -> tuple[float, float, float]:
    """Equations (1), (3) and (2) written out as sums over i and j, on normalised embeddings."""
    image, text = F.normalize(image, dim=1).tolist(), F.normalize(text, dim=1).tolist()
    n = len(image)

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    i_t = -sum(math.log(math.exp(dot(image[i], text[i]) / tau)
                        / sum(math.exp(dot(image[i], text[j]) / tau) for j in range(n))) for i in range(n)) / n  # fmt: skip
    t_i = -sum(math.log(math.exp(dot(text[i], image[i]) / tau)
                        / sum(math.exp(dot(text[i], image[j]) / tau) for j in range(n))) for i in range(n)) / n  # fmt: skip
    return i_t, t_i, (i_t + t_i) / 2


@pytest.mark.parametrize(("n", "d", "tau", "seed"), [(2, 3, 0.5, 0), (7, 5, 0.1, 1), (16, 8, 1.0, 2)])
def test_clip_loss_matches_the_equations_written_as_loops(n, d, tau, seed):
    g = torch.Generator().manual_seed(seed)
    image, text = (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
    )
    terms = clip_loss(image, text, tau)
    i_t, t_i, total = reference_loss(image, text, tau)
    assert terms.image_to_text.item() == pytest.approx(i_t, rel=1e-9)
    assert terms.text_to_image.item() == pytest.approx(t_i, rel=1e-9)
    assert terms.loss.item() == pytest.approx(total, rel=1e-9)
    assert terms.image_to_text.item() != pytest.approx(terms.text_to_image.item())  # the two directions differ


def test_clip_loss_is_symmetric_in_its_arguments_and_checks_shapes():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    forward, swapped = clip_loss(a, b), clip_loss(b, a)
    assert forward.loss.item() == pytest.approx(swapped.loss.item())
    assert forward.image_to_text.item() == pytest.approx(swapped.text_to_image.item())
    with pytest.raises(ValueError, match="one shape"):
        clip_loss(a, b[:5])
    with pytest.raises(ValueError, match="temperature"):
        clip_loss(a, b, 0.0)


def test_matching_pairs_score_lower_and_the_loss_falls_when_trained():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    assert clip_loss(x, x + 0.01 * torch.randn(32, 8, generator=g)).loss < clip_loss(x, x[torch.randperm(32)]).loss
    image = torch.randn(32, 8, generator=g, requires_grad=True)
    text = torch.randn(32, 8, generator=g, requires_grad=True)
    optimizer = torch.optim.Adam([image, text], lr=0.05)
    losses = []
    for _ in range(20):
        terms = clip_loss(image, text, 0.1)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        losses.append(terms.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert clip_loss(image, text, 0.1).top1.item() > 0.9  # nearly every image now finds its own text first


def test_captions_are_class_names_in_templates_and_tokenise_back():
    classes = ("T-shirt/top", "Ankle boot", "Bag")
    vocabulary = Vocabulary(classes)
    tokens = caption_tokens(vocabulary, classes)
    assert tokens.shape == (len(TEMPLATES), 3, vocabulary.max_length)
    first = [vocabulary.words[i] for i in tokens[0, 1].tolist() if i]
    assert first == words(TEMPLATES[0].format("ankle boot"))
    assert vocabulary.unknown("dogs in the park") == ["dogs", "in", "park"]
    assert vocabulary.encode(["dogs"])[0, 0].item() == 1  # the unknown token
    g = torch.Generator().manual_seed(0)
    batch = caption_batch(tokens, torch.tensor([2, 0, 2]), g)
    assert all("bag" in [vocabulary.words[i] for i in row] for row in batch[[0, 2]].tolist())


def test_the_model_embeds_both_modalities_into_one_space():
    from lfr_report.models import build_encoder

    vocabulary = Vocabulary(("cat", "dog"))
    model = ImageTextModel(build_encoder("convnet", 1, 16, 12, [4, 8]), TextEncoder(len(vocabulary), 8, 16), 12)
    images = model.embed_images(torch.randn(5, 1, 12, 12))
    texts = model.embed_texts(vocabulary.encode(["a photo of a cat"] * 5))
    assert images.shape == texts.shape == (5, 12)
    padded = vocabulary.encode(["a cat"], length=8)
    assert torch.allclose(model.text_encoder(padded), model.text_encoder(padded[:, :2]), atol=1e-5)  # padding ignored


def test_zero_shot_retrieval_and_query_classes():
    classes = ("Shirt", "T-shirt/top", "Ankle boot")
    assert query_class("a photo of a t-shirt top", classes) == 1  # the longest name wins over 'shirt'
    assert query_class("an ankle boot in the park", classes) == 2
    assert query_class("dogs in the park", classes) is None
    texts = torch.eye(3)
    images = torch.tensor([[1.0, 0.1, 0], [0, 2.0, 0], [0, 0, 3.0], [0.2, 0, 1.0]])
    assert zero_shot_accuracy(images, texts, torch.tensor([0, 1, 2, 0])) == 0.75
    index, scores = retrieve(texts[2:], images, k=2)
    assert index.tolist() == [[2, 3]] and scores[0, 0] == pytest.approx(1.0)
