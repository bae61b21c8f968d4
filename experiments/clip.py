"""Problem 7.2: a contrastive image-text model (a simplified CLIP), then a linear probe on
its image encoder, zero-shot classification and text-to-image retrieval.

    python experiments/clip.py                                   # default: Fashion-MNIST, captions from class names
    python experiments/clip.py with 'queries=["a small bag"]'    # retrieve for your own queries as well
    python experiments/clip.py with smoke                        # seconds, synthetic data (tests)

The assignment pairs people's captions with images and uses an ImageNet-pretrained
ResNet-50 and a frozen DistilBERT. None of that is available offline, so here every
training image gets a caption made from its class name and a template (``data.captions``),
drawn afresh each epoch, and both encoders are small and trained from scratch: the ConvNet
of ``models.encoders`` for images, a two-layer transformer for text, each followed by a
projection head into one ``embedding_dim`` space. The loss is equations (1)-(3)
(``ssl.clip.clip_loss``).

``data.train_size`` captioned images of the train split train the model; ``labelled`` other
images of that split (labels kept) train the linear probe on the frozen image encoder,
with the recipe of the autoencoder experiment's method I, so the two accuracies compare.

Logged: ``train_loss`` (and its two directions), ``train_top1``, ``test_loss``,
``test_top1`` per epoch; ``probe_accuracy`` per probe seed; ``zero_shot_accuracy``;
``retrieval_precision`` (share of the top ``top_k`` images whose class the query names).
``clip.pt`` (weights, vocabulary) and ``retrieval.npz`` (each query's top images) are
stored with the run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lfr_report import names
from lfr_report.data import get_spec, load_dataset
from lfr_report.data.captions import TEMPLATES, Vocabulary, caption, caption_tokens
from lfr_report.errors import ConfigError
from lfr_report.evaluate.features import encode
from lfr_report.evaluate.finetune import fine_tune
from lfr_report.evaluate.image_text import query_class, retrieve, zero_shot_accuracy
from lfr_report.experiment import (
    checks,
    integer,
    interval,
    list_of,
    new_experiment,
    positive,
    positive_int,
    record_data,
    text,
)
from lfr_report.models import build_encoder
from lfr_report.models.clip import ImageTextModel, TextEncoder
from lfr_report.ssl.clip import train_clip
from lfr_report.ssl.train import checkpoint_path, remove_checkpoints
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact, add_torch_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

# data.train_size: the captioned training images (Simple CLIP, which the problem builds on: Flickr-8k, ~8,000 images)
ex = new_experiment("clip", data={"train_size": 20000})


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full
    seed = 0  # seeds the split, the weights, the batches and the captions drawn
    device = "auto"  # auto | cpu | cuda
    labelled = 5000  # other training images for the linear probe (as the autoencoder's classifiers get)
    widths = [32, 64, 128]  # channels of the image ConvNet's 3x3 blocks (flattened map, then a linear layer)
    image_dim = 128  # image encoder output: what the linear probe sees
    text_dim = 64  # width of the text transformer (2 layers, 4 heads)
    embedding_dim = 64  # the shared space both projection heads map into
    dropout = 0.1  # in the projection heads, as Simple CLIP
    temperature = 0.1  # tau of equations (1) and (3); fixed, as in the problem (CLIP learns it)
    epochs = 10  # passes over the captioned images
    batch_size = 256  # N of equation (1): each image is scored against N captions
    lr = 1e-3  # Adam learning rate, both encoders and heads
    probe_epochs = 20  # linear probe: passes over the labelled images (Adam, as the autoencoder's method I)
    probe_lr = 1e-3  # its Adam learning rate (times 0.1 at 100/180 and 150/180 of the steps)
    probe_seeds = [0, 1, 2]  # one probe per seed; the report shows mean and std
    top_k = 8  # images retrieved per query
    queries = ["a black and white photo of a sneaker on a plain background", "dogs in the park"]  # free text, beside one "a photo of a <class>" query per class


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic gratings, two epochs
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
    labelled = 256
    widths = [8, 16]
    image_dim = 32
    text_dim = 16
    embedding_dim = 16
    epochs = 2
    batch_size = 64
    probe_epochs = 2
    probe_seeds = [0, 1]
    queries = ["a photo in the park"]


@ex.named_config
def full():
    scale = "full"  # longer training of the same model; with pretrained encoders offline, swap them in here
    epochs = 40
    data = {"train_size": 50000}


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    labelled = 64
    epochs = 1
    batch_size = 32
    probe_epochs = 1
    probe_seeds = [0, 1]
# fmt: on


def _batch_within_the_data(config):
    train_size = config["data"]["train_size"]
    if config["batch_size"] < 2 or config["batch_size"] > train_size:
        raise ConfigError(f"batch_size must be in [2, data.train_size={train_size}] (a batch holds the negatives), "
                          f"got {config['batch_size']}")  # fmt: skip


checks(ex, {
    "widths": list_of(positive_int), "queries": list_of(text),
    "data.train_size": positive_int, "labelled": positive_int, "epochs": positive_int, "batch_size": positive_int,
    "probe_epochs": positive_int, "top_k": positive_int, "image_dim": positive_int, "text_dim": positive_int,
    "embedding_dim": positive_int, "temperature": positive, "lr": positive, "probe_lr": positive,
    "dropout": interval("[0, 1)"), "probe_seeds": list_of(integer),
}, extra=_batch_within_the_data)  # fmt: skip


@ex.main
def main(_run, _config, _seed, device, data, labelled, widths, image_dim, text_dim, embedding_dim, dropout, temperature, epochs,
         batch_size, lr, probe_epochs, probe_lr, probe_seeds, top_k, queries):  # fmt: skip
    device = begin_run(_run, _seed, device)
    dataset = data["name"]
    spec = get_spec(dataset)
    captioned, probe_set = load_dataset(dataset, "train").disjoint_subsets(data["train_size"], labelled, _seed)
    test = load_dataset(dataset, "test").subset(data["test_size"], _seed)
    if len(test) < batch_size:
        raise ConfigError(f"data.test_size must be at least batch_size={batch_size}, got {len(test)} test images")
    record_data(_run, spec, data_source=captioned.source, dataset=dataset, captioned_images=len(captioned),
                labelled_images=len(probe_set), test_images=len(test),
                captions=[caption(t, "<class>") for t in range(len(TEMPLATES))],
                encoders="trained here: image ConvNet and text transformer (no pretrained weights offline)")  # fmt: skip

    vocabulary = Vocabulary(spec.classes)
    tokens = caption_tokens(vocabulary, spec.classes)
    image_encoder = build_encoder("convnet", spec.channels, image_dim, spec.shape[1], tuple(widths))
    model = ImageTextModel(image_encoder, TextEncoder(len(vocabulary), vocabulary.max_length, text_dim),
                           embedding_dim, dropout).to(device)  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(_seed)
    train_clip(model, captioned.images, captioned.labels, tokens, mean=spec.mean, std=spec.std, epochs=epochs,
               batch_size=batch_size, lr=lr, temperature=temperature, generator=generator, device=device,
               log=_run.log_scalar, test=(test.images, test.labels), checkpoint=checkpoint_path("clip", _config))  # fmt: skip
    model.eval()

    # Zero-shot: each class's caption embedding, averaged over the templates, as a classifier.
    images = encode(model.image_embedder(), test.images, spec.mean, spec.std, device)
    with torch.no_grad():
        by_template = F.normalize(model.embed_texts(tokens.flatten(0, 1).to(device)), dim=1).cpu()
        class_texts = by_template.view(len(TEMPLATES), len(spec.classes), -1).mean(0)
    zero_shot = zero_shot_accuracy(images, class_texts, test.labels)
    _run.log_scalar(names.ZERO_SHOT_ACCURACY, zero_shot, 0)

    # Retrieval: every query's top_k test images.
    asked = [caption(0, c) for c in spec.classes] + list(queries)
    with torch.no_grad():
        query_embeddings = model.embed_texts(vocabulary.encode(asked).to(device)).cpu()
    index, scores = retrieve(query_embeddings, images, top_k)
    named = [query_class(q, spec.classes) for q in asked]
    hits = [float((test.labels[row] == c).float().mean()) for row, c in zip(index, named, strict=True) if c is not None]
    precision = float(np.mean(hits)) if hits else float("nan")
    _run.log_scalar(names.RETRIEVAL_PRECISION, precision, 0)
    add_npz_artifact(_run, names.RETRIEVAL, queries=np.array(asked), index=index, scores=scores,
                     images=test.images[index.flatten()].view(len(asked), -1, *test.images.shape[1:]),
                     labels=test.labels[index], named_class=np.array([-1 if c is None else c for c in named]),
                     unknown_words=np.array([" ".join(vocabulary.unknown(q)) for q in asked]))  # fmt: skip
    add_torch_artifact(_run, names.CLIP_MODEL, {"vocabulary": vocabulary.words, "state_dict": model.cpu().state_dict(),
                                         "widths": list(widths), "image_dim": image_dim, "text_dim": text_dim,
                                         "embedding_dim": embedding_dim})  # fmt: skip
    model.to(device)

    # Linear probe on the frozen image encoder (the representation, not the projection).
    accuracies = []
    for i, seed in enumerate(probe_seeds):
        result = fine_tune(model.image_encoder, probe_set.images, probe_set.labels, test.images, test.labels,
                           mean=spec.mean, std=spec.std, epochs=probe_epochs, batch_size=64, lr=probe_lr,
                           weight_decay=0.0, seed=seed, device=device, frozen=True, optimizer="adam",
                           checkpoint=checkpoint_path("clip", _config, f"probe-seed{seed}"))  # fmt: skip
        _run.log_scalar(names.CLIP_PROBE_ACCURACY, result.test_accuracy, i)
        accuracies.append(result.test_accuracy)

    summary = {"probe_accuracy_mean": float(np.mean(accuracies)), "probe_accuracy_std": float(np.std(accuracies)),
               "zero_shot_accuracy": zero_shot, "retrieval_precision": precision}  # fmt: skip
    print(f"clip run {_run._id}: image-text model on {len(captioned)} captioned {dataset} images; linear probe "
          f"{100 * summary['probe_accuracy_mean']:.2f}% on {len(probe_set)} labels, zero-shot {100 * zero_shot:.2f}%, "
          f"retrieval precision@{top_k} {100 * precision:.1f}%; results in {run_location(_run)}")  # fmt: skip
    remove_checkpoints("clip", _config)
    return summary


if __name__ == "__main__":
    run_commandline(ex)
