"""VICReg pretraining, then a linear probe on the frozen encoder beside the raw-pixel floor.

    python experiments/vicreg.py                      # default scale: Fashion-MNIST on the CPU
    python experiments/vicreg.py with smoke           # seconds, synthetic data (tests)
    python experiments/vicreg.py with full            # the exercise's CIFAR-10 setting, for a GPU
    python experiments/vicreg.py with no_variance     # ablation 1 (Q4): mu = 0
    python experiments/vicreg.py with no_generated_neighbours neighbours_from=7   # ablation 2 (Q5)
    python experiments/vicreg.py print_config with full
    python experiments/vicreg.py with default epochs=3 -F /tmp/runs   # any value, any observer

The run logs ``train_{loss,invariance,variance,covariance}`` per training batch and
``test_*`` once per epoch, then ``probe_test_accuracy`` and ``pixels_probe_test_accuracy``.
Artifacts: ``encoder.pt`` (weights and architecture), ``test_representations.npz``
(features, labels) and ``test_embedding_2d.npz`` (PCA and t-SNE of those features).
A killed run leaves a checkpoint; the same command resumes it from its last epoch.
"""

from __future__ import annotations

import torch

from lfr_report import distributed, names
from lfr_report.data import subset_index
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.embed import pca_2d, tsne_2d
from lfr_report.experiment import (
    at_least,
    boolean,
    checks,
    completed_run,
    interval,
    list_of,
    load_encoder,
    new_experiment,
    non_negative,
    one_of,
    optional,
    pair,
    positive,
    positive_int,
    record_data,
    run_number,
    save_encoder,
)
from lfr_report.ingredients import augment_ingredient, build_augment, load_splits, probe_ingredient, run_probe
from lfr_report.models import ENCODERS, Projector, build_encoder, encoder_arch
from lfr_report.ssl import VICRegLoss
from lfr_report.ssl.train import checkpoint_path, fit, on_device_if_fits, remove_checkpoints
from lfr_report.ssl.views import augmented_pair, neighbour_pair, neighbour_table
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

ex = new_experiment("vicreg", augment_ingredient, probe_ingredient, distributed=True)


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run (reports show it)
    seed = 0  # seeds python, numpy and torch; also picks data subsets
    device = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    encoder = "convnet"  # convnet (small, for CPUs) | resnet18 (the exercise's CIFAR-stem ResNet-18)
    widths = [32, 64, 128]  # convnet only: channels of each 3x3 conv block (each after the first halves the size)
    pool = "flatten"  # convnet only: flatten the last feature map into the head (keeps layout) | avg
    encoder_dim = 128  # size of the representation y (the exercise's "encoder dimension")
    projector_dim = 512  # width of the 3-layer projector h (the exercise's d)
    epochs = 4  # passes over the training set (CPU scale; a fifth lowered the test loss by 1.2 %, measured; full: 30)
    batch_size = 256  # |B|, images per step (each seen as two views)
    lr = 3e-4  # Adam learning rate (the exercise's)
    betas = (0.9, 0.999)  # Adam betas (the exercise's)
    weight_decay = 1e-6  # Adam weight decay (the exercise's)
    lambda_ = 25.0  # weight of the invariance term (eq. 6)
    mu = 25.0  # weight of the variance term; 0 is the "no variance" ablation
    nu = 1.0  # weight of the covariance term
    gamma = 1.0  # target standard deviation in the variance hinge (eq. 3)
    eps = 1e-4  # added to the variance before the square root (eq. 3)
    views = "augment"  # augment: two random augmentations | neighbours: the image and a near neighbour (Q5)
    neighbours_from = None  # views=neighbours: id of the run whose encoder defines the neighbours
    neighbours_k = 3  # views=neighbours: the second view is a random one of the k nearest neighbours
    channels_last = True  # NHWC memory layout: faster convolutions on CPUs and tensor cores
    amp = True  # CUDA only: forward passes under bf16 autocast (the loss stays float32); ignored on CPUs
    compile = False  # torch.compile the networks: ~10% more images/s on CPUs, minutes of compiling first
    tsne_points = 3000  # test representations embedded with t-SNE for the report: as many dots as a half-page figure shows apart (t-SNE's time grows faster than N; full: every test image, as Q2 asks)
    log_every = 20  # batches between metric flushes (per-batch values are all kept)


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic data, a tiny ConvNet, one epoch
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
    widths = [8, 16]
    encoder_dim = 16
    projector_dim = 32
    epochs = 1
    batch_size = 64
    tsne_points = 200
    probe = {"epochs": 10, "batch_size": 64}  # dozens of steps on smoke's few hundred features (the default 1,024 is one step an epoch)


@ex.named_config
def full():
    scale = "full"  # the exercise's setting: CIFAR-10, ResNet-18, 30 epochs; meant for a GPU
    data = {"name": "cifar10"}
    encoder = "resnet18"
    epochs = 30
    tsne_points = 10000  # every test image (Q2)


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    epochs = 1
    batch_size = 32
    tsne_points = 64
    probe = {"epochs": 5}


@ex.named_config
def no_variance():
    mu = 0.0  # ablation 1 (Q4): the variance term removed


@ex.named_config
def no_generated_neighbours():
    views = "neighbours"  # ablation 2 (Q5): real neighbours of each image instead of generated views
    epochs = 1  # the exercise advises a single epoch for this ablation
# fmt: on


def _views_and_batch(config):
    if config["views"] == "neighbours" and config["neighbours_from"] is None:
        raise ConfigError("views=neighbours needs neighbours_from=<id of a completed VICReg run>")
    if config["views"] == "neighbours":
        completed_run(config["neighbours_from"])  # "run N is FAILED" before a run is recorded
    train_size = config["data"]["train_size"]
    if train_size is not None and train_size < config["batch_size"]:
        raise ConfigError(f"data.train_size={train_size} is smaller than one batch of {config['batch_size']}")


checks(ex, {
    "encoder": one_of(*ENCODERS), "widths": list_of(positive_int), "pool": one_of("flatten", "avg"),
    "betas": pair(interval("[0, 1)"), ordered=False), "neighbours_from": optional(run_number), "channels_last": boolean,
    "amp": boolean, "compile": boolean,
    "epochs": positive_int, "encoder_dim": positive_int, "projector_dim": positive_int, "tsne_points": positive_int,
    "log_every": positive_int, "neighbours_k": positive_int, "batch_size": at_least(2, "variance needs two samples"),
    "lr": positive, "lambda_": non_negative, "mu": non_negative, "nu": non_negative, "weight_decay": non_negative,
    "gamma": positive, "eps": positive, "views": one_of("augment", "neighbours"),
}, extra=_views_and_batch)  # fmt: skip


def neighbour_views(source_run, train, test, k, augment, device, channels_last):
    """Q5's view makers: each image paired with one of its k nearest neighbours under the
    encoder of ``source_run`` (train images among train images, test among test)."""
    trained_on = completed_run(source_run).config.get("data", {}).get("name")
    if trained_on != train.name:
        raise ConfigError(f"neighbours_from={source_run} was trained on {trained_on!r}, not {train.name!r}")
    encoder = load_encoder(source_run)[0].to(device)
    pairs = []
    for split in (train, test):
        features = encode(encoder, split.images, split.spec.mean, split.spec.std, device)
        pairs.append(neighbour_pair(split.images, neighbour_table(features, k), augment, channels_last))
    return pairs


@ex.main
def main(_run, _config, _seed, device, encoder, widths, pool, encoder_dim, projector_dim, epochs, batch_size, lr, betas,
         weight_decay, lambda_, mu, nu, gamma, eps, views, neighbours_from, neighbours_k, channels_last, amp, compile,
         tsne_points, log_every):  # fmt: skip
    device = begin_run(_run, _seed, device)
    train, test = load_splits(_config["seed"])
    record_data(_run, train.spec, data_source=train.source, train_images=len(train), test_images=len(test))
    if len(train) < batch_size:
        raise ConfigError(f"{train.name} has {len(train)} training images, fewer than one batch of {batch_size}")

    augment = build_augment(train.spec)
    if views == "neighbours":
        train_views, test_views = neighbour_views(
            neighbours_from, train, test, neighbours_k, augment, device, channels_last
        )
    else:
        train_views = test_views = augmented_pair(augment, channels_last)

    arch = encoder_arch(encoder, train.spec.channels, encoder_dim, train.spec.shape[-1], widths, pool)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    f = build_encoder(**arch).to(device, memory_format=layout)
    h = Projector(encoder_dim, projector_dim).to(device)
    optimizer = torch.optim.Adam(
        [*f.parameters(), *h.parameters()], lr=lr, betas=tuple(betas), weight_decay=weight_decay
    )
    checkpoint = checkpoint_path("vicreg", _config)
    result = fit(
        encoder=f, projector=h, objective=VICRegLoss(lambda_, mu, nu, gamma, eps), make_views=train_views,
        make_test_views=test_views, train_images=on_device_if_fits(train.images, device),
        test_images=on_device_if_fits(test.images, device), optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, device=device, log=_run.log_scalar, amp=amp, compile=compile,
        generator=torch.Generator(device=device).manual_seed(_seed), checkpoint=checkpoint, log_every=log_every,
    )  # fmt: skip
    _run.info["resumed_from_epoch"] = result.resumed_from_epoch
    if not distributed.end():  # under torchrun: rank 0 evaluates and records alone
        return None

    mean, std = train.spec.mean, train.spec.std
    train_features = encode(f, train.images, mean, std, device, channels_last=channels_last)
    test_features = encode(f, test.images, mean, std, device, channels_last=channels_last)
    probe = run_probe(train_features, train.labels, test_features, test.labels, device)
    pixels = run_probe(train.images.flatten(1) / 255, train.labels, test.images.flatten(1) / 255, test.labels, device)
    for prefix, res in (("probe", probe), ("pixels_probe", pixels)):
        _run.log_scalar(f"{prefix}_test_accuracy", res.test_accuracy)
        _run.log_scalar(f"{prefix}_train_accuracy", res.train_accuracy)

    save_encoder(_run, f, arch)
    add_npz_artifact(_run, names.TEST_REPRESENTATIONS, features=test_features, labels=test.labels)
    shown = subset_index(len(test), tsne_points, _seed)
    points = test_features[shown]
    add_npz_artifact(_run, names.TEST_EMBEDDING_2D, pca=pca_2d(points), tsne=tsne_2d(points, seed=_seed),
                     labels=test.labels[shown], index=shown)  # fmt: skip
    remove_checkpoints("vicreg", _config)

    print(f"vicreg run {_run._id}: linear probe {probe.test_accuracy:.2%} on {train.name} test "
          f"(raw pixels {pixels.test_accuracy:.2%}); weights and representations in {run_location(_run)}")  # fmt: skip
    return {names.PROBE_TEST_ACCURACY: probe.test_accuracy, names.PIXELS_PROBE_TEST_ACCURACY: pixels.test_accuracy}


if __name__ == "__main__":
    run_commandline(ex)
