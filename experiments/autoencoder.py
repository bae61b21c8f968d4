"""Problem 7.1: a convolutional autoencoder pretrained on unlabelled images, then linear
classifiers on its representation.

    python experiments/autoencoder.py                    # default: Fashion-MNIST, plain autoencoder
    python experiments/autoencoder.py with denoising     # the denoising autoencoder (classifier on it only)
    python experiments/autoencoder.py with full          # STL-10's unlabelled split, when present
    python experiments/autoencoder.py with smoke         # seconds, synthetic data (tests)

The problem trains on 10,000 of STL-10's unlabelled images and fits classifiers on its
5,000 labelled training images. STL-10 is used when it is on disk (``full``); the offline
default takes ``unlabelled`` images of Fashion-MNIST's training split as the unlabelled
set (labels dropped) and ``labelled`` other images of that split as the labelled one, and
scores on the test split. Images are resized to ``image_size`` (a multiple of 8).

The classifiers (``classifiers``), each a linear layer on the flattened encoder output,
trained with Adam once per seed in ``classifier_seeds``:

* ``frozen`` (method I): on the frozen pretrained encoder;
* ``joint`` (method II): the encoder, from fresh weights, trained together with it;
* ``random`` (method III): on a frozen, randomly initialised encoder.

Logged: ``train_loss``/``test_loss`` (reconstruction MSE) per epoch, ``accuracy_<kind>``
per seed; ``autoencoder.pt`` (weights) and ``reconstructions.npz`` (test images, the
autoencoder's inputs and outputs) are stored with the run.
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import get_spec, load_dataset, subset_index
from lfr_report.data.augment import fit_to_shape
from lfr_report.data.fetch import is_present
from lfr_report.errors import ConfigError
from lfr_report.evaluate.finetune import fine_tune
from lfr_report.experiment import (
    checks,
    integer,
    list_of,
    new_experiment,
    non_negative,
    one_of,
    positive,
    positive_int,
    record_data,
)
from lfr_report.models.autoencoder import ConvAutoencoder, ConvEncoder
from lfr_report.ssl.autoencoder import corrupt, train_autoencoder
from lfr_report.ssl.train import checkpoint_path, remove_checkpoints
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact, add_torch_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

CLASSIFIERS = ("frozen", "joint", "random")
SHOWN = 8  # test images kept with their reconstructions

ex = new_experiment("autoencoder")


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full
    seed = 0  # seeds the split into unlabelled / labelled images, the weights and the batches
    device = "auto"  # auto | cpu | cuda
    unlabelled = 10000  # images the autoencoder trains on (the problem: 10,000 of STL-10's unlabelled images)
    labelled = 5000  # labelled training images for the classifiers (the problem: STL-10's 5,000)
    image_size = 32  # images are resized to this side; a multiple of 2^len(widths)
    widths = [12, 24, 48]  # channels of the encoder's kernel-4, stride-2, padding-1 convolutions
    epochs = 20  # autoencoder training passes over the unlabelled images
    batch_size = 64  # images per step, autoencoder and classifiers
    lr = 1e-3  # Adam learning rate of the autoencoder
    noise_std = 0.0  # > 0: a denoising autoencoder, Gaussian noise of this std on inputs in [0, 1]
    classifiers = ["frozen", "joint", "random"]  # methods I, II and III of the problem
    classifier_epochs = 20  # passes over the labelled images per classifier
    classifier_lr = 1e-3  # Adam learning rate of the classifiers (times 0.1 at 100/180 and 150/180 of the steps)
    classifier_seeds = [0, 1, 2]  # one classifier per seed; the report shows mean and std


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic gratings, two epochs
    data = {"name": "synthetic", "test_size": 256}
    unlabelled = 512
    labelled = 256
    widths = [4, 8, 16]
    epochs = 2
    classifier_epochs = 2
    classifier_seeds = [0, 1]


@ex.named_config
def denoising():
    noise_std = 0.3  # the fourth row of the report's table: a denoising autoencoder
    classifiers = ["frozen"]  # methods II and III do not depend on the pretraining; the plain run has them


@ex.named_config
def full():
    scale = "full"  # the problem's setting: STL-10 (96x96 resized to 32x32) when on disk
    data = {"name": "stl10"}  # stl10 uses its unlabelled split when present; others split their train split


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"test_size": 64}
    unlabelled = 128
    labelled = 64
    epochs = 1
    classifier_epochs = 1
    classifier_seeds = [0, 1]
# fmt: on


def _sizes(config):
    if config["image_size"] % 2 ** len(config["widths"]):
        raise ConfigError(f"image_size must be a multiple of {2 ** len(config['widths'])} for {len(config['widths'])} "
                          f"stride-2 layers, got {config['image_size']}")  # fmt: skip
    if config["data"]["train_size"] is not None:
        raise ConfigError("data.train_size must be None here: unlabelled and labelled say how many training images")


checks(ex, {
    "widths": list_of(positive_int),
    "unlabelled": positive_int, "labelled": positive_int, "image_size": positive_int, "epochs": positive_int,
    "batch_size": positive_int, "classifier_epochs": positive_int, "classifiers": list_of(one_of(*CLASSIFIERS)),
    "classifier_seeds": list_of(integer), "noise_std": non_negative, "lr": positive, "classifier_lr": positive,
}, extra=_sizes)  # fmt: skip


def layer_shapes(channels: int, side: int, widths: list[int]) -> list[str]:
    """'C×H×W' of the input and after each encoder convolution (kernel 4, stride 2, padding 1 halves the side)."""
    return [f"{c}×{side >> i}×{side >> i}" for i, c in enumerate([channels, *widths])]


def split_images(dataset: str, unlabelled: int, labelled: int, test_size: int | None, seed: int):
    """(unlabelled uint8 images, labelled training set, test set, where the unlabelled ones came from)."""
    train = load_dataset(dataset, "train")
    test = load_dataset(dataset, "test").subset(test_size, seed)
    if dataset == "stl10" and is_present("stl10"):
        pool = load_dataset("stl10", "unlabeled")
        return (
            pool.images[subset_index(len(pool), unlabelled, seed)],
            train.subset(labelled, seed),
            test,
            "unlabeled split",
        )
    pool, picked = train.disjoint_subsets(unlabelled, labelled, seed)
    return pool.images, picked, test, "train split, labels dropped"


@ex.main
def main(_run, _config, _seed, device, data, unlabelled, labelled, image_size, widths, epochs, batch_size, lr, noise_std,
         classifiers, classifier_epochs, classifier_lr, classifier_seeds):  # fmt: skip
    device = begin_run(_run, _seed, device)
    dataset = data["name"]
    spec = get_spec(dataset)
    pool, train, test, pool_source = split_images(dataset, unlabelled, labelled, data["test_size"], _seed)
    shape = (spec.channels, image_size, image_size)
    pool, train_images, test_images = (fit_to_shape(x, shape) for x in (pool, train.images, test.images))
    record_data(_run, spec, data_source=train.source, unlabelled_from=pool_source, unlabelled_images=len(pool),
                labelled_images=len(train), test_images=len(test), dataset=dataset)  # fmt: skip

    model = ConvAutoencoder(spec.channels, image_size, tuple(widths)).to(device)
    _run.info.update(layer_shapes=layer_shapes(spec.channels, image_size, widths), code_size=model.encoder.dim,
                     weights={part: sum(p.numel() for p in getattr(model, part).parameters())
                              for part in ("encoder", "decoder")})  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(_seed)
    test_loss = train_autoencoder(model, pool, test_images, epochs=epochs, batch_size=batch_size, lr=lr,
                                  noise_std=noise_std, generator=generator, device=device, log=_run.log_scalar,
                                  checkpoint=checkpoint_path("autoencoder", _config))  # fmt: skip
    model.eval()
    with torch.no_grad():
        shown = test_images[:SHOWN].to(device).float() / 255
        inputs = corrupt(shown, noise_std, torch.Generator(device=device).manual_seed(_seed))
        outputs = model(inputs)
    as_uint8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # noqa: E731
    add_npz_artifact(_run, names.RECONSTRUCTIONS, images=as_uint8(shown), inputs=as_uint8(inputs),
                     outputs=as_uint8(outputs), labels=test.labels[:SHOWN])  # fmt: skip
    add_torch_artifact(_run, names.AUTOENCODER, {"in_channels": spec.channels, "image_size": image_size,
                                                "widths": list(widths), "state_dict": model.cpu().state_dict()})  # fmt: skip

    summary: dict[str, float] = {"test_reconstruction_mse": test_loss}
    for kind in classifiers:
        accuracies = []
        for i, seed in enumerate(classifier_seeds):
            torch.manual_seed(seed)
            encoder = ConvEncoder(spec.channels, image_size, tuple(widths))
            if kind == "frozen":
                encoder.load_state_dict(model.encoder.state_dict())
            result = fine_tune(
                encoder, train_images, train.labels, test_images, test.labels, mean=(0.0,) * spec.channels,
                std=(1.0,) * spec.channels, epochs=classifier_epochs, batch_size=batch_size, lr=classifier_lr,
                weight_decay=0.0, seed=seed, device=device, frozen=kind != "joint", optimizer="adam",
                checkpoint=checkpoint_path("autoencoder", _config, f"{kind}-seed{seed}"),
            )  # fmt: skip
            _run.log_scalar(names.classifier_accuracy(kind), result.test_accuracy, i)
            accuracies.append(result.test_accuracy)
        summary[f"accuracy_{kind}_mean"] = float(np.mean(accuracies))
        summary[f"accuracy_{kind}_std"] = float(np.std(accuracies))

    what = "denoising autoencoder" if noise_std else "autoencoder"
    scores = ", ".join(f"{k} {100 * summary[f'accuracy_{k}_mean']:.2f}%" for k in classifiers)
    print(f"autoencoder run {_run._id}: {what} on {len(pool)} unlabelled {dataset} images, test MSE {test_loss:.4f}; "
          f"linear classifiers on {len(train)} labelled: {scores}; results in {run_location(_run)}")  # fmt: skip
    remove_checkpoints("autoencoder", _config)
    return summary


if __name__ == "__main__":
    run_commandline(ex)
