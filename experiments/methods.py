"""One self-supervised method of the lectures under the protocol every method shares: the same
encoder pretrained on the same unlabelled images for the same number of images seen, with
the same optimiser, then the same evaluations of the frozen encoder.

    python experiments/methods.py with method=rotation        # default: Fashion-MNIST, 4-block ConvNet
    python experiments/methods.py with method=byol smoke      # seconds, synthetic data (tests)
    python experiments/methods.py with method=simclr full     # CIFAR-10, ResNet-18 with the CIFAR stem (a GPU)
    python experiments/methods.py print_config

Methods (``lfr_report.ssl.methods``): rotation, jigsaw and relative patch position (pretext
tasks), mae (masked reconstruction), simclr (contrastive), byol, vicreg and barlow
(non-contrastive). Pretraining takes ``images_seen // batch_size`` steps of Adam on the
training split (labels unused), logging each objective term per batch as ``train_<term>``;
its wall time and images per second go to the run's info. Then, on the frozen encoder: a
linear probe on the whole labelled training split, once per probe seed
(``probe_test_accuracy``, step = the seed's index), and the weighted kNN classifier
(``knn_test_accuracy``: k nearest by cosine similarity, votes exp(s / T)). ``encoder.pt``
is the pretrained encoder (fine-tuning with few labels is ``experiments/finetune.py`` on
it), ``test_embedding_2d.npz`` a t-SNE of test representations.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import get_spec, subset_index
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.embed import pca_2d, tsne_2d
from lfr_report.evaluate.knn import knn_accuracy
from lfr_report.experiment import (
    at_least,
    boolean,
    checks,
    integer,
    interval,
    list_of,
    new_experiment,
    non_negative,
    one_of,
    positive,
    positive_int,
    record_data,
    save_encoder,
)
from lfr_report.ingredients import augment_ingredient, build_augment, load_splits, probe_ingredient, run_probe
from lfr_report.models import ENCODERS, build_encoder, encoder_arch
from lfr_report.ssl.methods import METHODS, Settings, build
from lfr_report.ssl.train import checkpoint_path, on_device_if_fits, remove_checkpoints, train_loop
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

ex = new_experiment("methods", augment_ingredient, probe_ingredient)


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run (reports show it)
    seed = 0  # seeds python, numpy and torch for pretraining
    device = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    method = "simclr"  # rotation | jigsaw | relative_position | mae | simclr | byol | vicreg | barlow
    encoder = "convnet"  # the one backbone every method trains: convnet (CPU) | resnet20 | resnet18 (full, GPU)
    widths = [32, 64, 128, 256]  # convnet: one conv-BN-ReLU block per width (the SimCLR example's 4-block ConvNet)
    pool = "avg"  # convnet: global average pooling, so that the tile tasks' small tiles pass too
    encoder_dim = 128  # size of the representation h every evaluation uses
    images_seen = 60000  # training images drawn during pretraining, the same for every method (one Fashion-MNIST epoch)
    batch_size = 256  # images per step (the two-view methods make two views of each)
    lr = 1e-3  # Adam learning rate, every method
    weight_decay = 1e-6  # Adam weight decay, every method
    projector_dim = 512  # two-view methods: the projector's width and output (VICReg's exercise width)
    projector_layers = 3  # two-view methods: linear layers of the projector (BN and ReLU between)
    temperature = 0.5  # simclr: tau of NT-Xent
    vicreg_weights = [25.0, 25.0, 1.0]  # vicreg: lambda (invariance), mu (variance), nu (covariance), the paper's
    barlow_lambda = 0.005  # barlow: weight of the off-diagonal term, the paper's
    byol_decay = 0.99  # byol: base EMA decay of the target network, rising to 1 along a cosine (0.996 for long runs)
    mask_ratio = 0.75  # mae: share of the patches masked, MAE's
    mask_patch = 4  # mae: patch side in pixels (a 28x28 image: 49 patches)
    decoder_widths = [32, 64, 128]  # mae: the light decoder's blocks, from the representation back to the image
    permutations = 64  # jigsaw: the fixed set of tile permutations to tell apart (greedy maximal Hamming distance)
    tile_gap = 2  # jigsaw, relative_position: pixels a tile is smaller than its cell (jittered: no edge shortcuts)
    head_hidden = 512  # jigsaw, relative_position: hidden width of the classifier on the tiles' features
    probe_seeds = [0, 1, 2, 3]  # one linear probe per seed; the result keeps mean and std
    knn_k = 200  # kNN evaluation: neighbours that vote (lightly's benchmark: 200)
    knn_temperature = 0.1  # kNN evaluation: each vote weighs exp(cosine similarity / T)
    tsne_points = 1000  # test representations embedded with t-SNE for the report's panels
    channels_last = True  # NHWC memory layout: faster convolutions on CPUs and tensor cores
    log_every = 20  # batches between metric flushes


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic data, a tiny ConvNet, a few steps
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
    widths = [8, 16]
    encoder_dim = 16
    projector_dim = 32
    decoder_widths = [8, 16]
    head_hidden = 32
    permutations = 8
    images_seen = 640
    batch_size = 64
    probe_seeds = [0, 1]
    probe = {"epochs": 10, "batch_size": 64}  # dozens of steps on smoke's few hundred features (the default 1,024 is one step an epoch)
    knn_k = 20
    tsne_points = 64
    log_every = 5


@ex.named_config
def full():
    scale = "full"  # the published benchmarks' setting, for a GPU: CIFAR-10, ResNet-18 with the CIFAR stem
    data = {"name": "cifar10"}
    encoder = "resnet18"
    encoder_dim = 512
    images_seen = 10_000_000  # 200 epochs of CIFAR-10's 50,000 training images (lightly's shortest benchmark)
    batch_size = 256
    projector_dim = 2048
    byol_decay = 0.996  # BYOL's own, for long runs
    tsne_points = 2000


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    images_seen = 64
    batch_size = 32
    probe_seeds = [0, 1]
    probe = {"epochs": 5}
    knn_k = 20
    tsne_points = 32
# fmt: on


def _fits(config):
    train_size = config["data"]["train_size"]
    if train_size is not None and train_size < max(config["batch_size"], config["knn_k"]):
        raise ConfigError(f"data.train_size={train_size} is smaller than one batch of {config['batch_size']} "
                          f"or than knn_k={config['knn_k']}")  # fmt: skip
    if config["images_seen"] < config["batch_size"]:
        raise ConfigError(f"images_seen={config['images_seen']} is less than one batch of {config['batch_size']}")
    if (
        config["encoder"] == "convnet"
        and config["pool"] != "avg"
        and config["method"] in ("jigsaw", "relative_position")
    ):
        raise ConfigError(f"method={config['method']} feeds the encoder small tiles: it needs pool=avg")
    side = get_spec(config["data"]["name"]).shape[-1]
    if config["method"] == "mae" and side % config["mask_patch"]:
        raise ConfigError(f"mask_patch={config['mask_patch']} does not divide the {side}-pixel side of "
                          f"{config['data']['name']}'s images")  # fmt: skip


checks(ex, {
    "method": one_of(*METHODS), "encoder": one_of(*ENCODERS), "widths": list_of(positive_int),
    "pool": one_of("flatten", "avg"), "encoder_dim": positive_int, "images_seen": positive_int,
    "batch_size": at_least(2, "the two-view objectives need two images a batch"), "lr": positive,
    "weight_decay": non_negative, "projector_dim": positive_int, "projector_layers": positive_int,
    "temperature": positive, "vicreg_weights": list_of(non_negative), "barlow_lambda": non_negative,
    "byol_decay": interval("[0, 1)"), "mask_ratio": interval("(0, 1)"), "mask_patch": positive_int,
    "decoder_widths": list_of(positive_int), "permutations": at_least(2, "a jigsaw needs two permutations to tell apart"),
    "tile_gap": non_negative, "head_hidden": positive_int, "probe_seeds": list_of(integer), "knn_k": positive_int,
    "knn_temperature": positive, "tsne_points": positive_int, "channels_last": boolean, "log_every": positive_int,
}, extra=_fits)  # fmt: skip


@ex.main
def main(_run, _config, _seed, seed, device, method, encoder, widths, pool, encoder_dim, images_seen, batch_size, lr,
         weight_decay, projector_dim, projector_layers, temperature, vicreg_weights, barlow_lambda, byol_decay,
         mask_ratio, mask_patch, decoder_widths, permutations, tile_gap, head_hidden, probe_seeds, knn_k,
         knn_temperature, tsne_points, channels_last, log_every):  # fmt: skip
    device = begin_run(_run, _seed, device)
    train, test = load_splits(seed)
    record_data(_run, train.spec, data_source=train.source, train_images=len(train), test_images=len(test))
    if len(train) < max(batch_size, knn_k):
        raise ConfigError(f"{train.name} has {len(train)} training images, fewer than one batch of {batch_size} "
                          f"or than knn_k={knn_k}")  # fmt: skip
    size = train.spec.shape[-1]

    arch = encoder_arch(encoder, train.spec.channels, encoder_dim, size, widths, pool)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    f = build_encoder(**arch).to(device, memory_format=layout)
    steps = images_seen // batch_size
    generator = torch.Generator(device=device).manual_seed(_seed)
    settings = Settings(projector_dim, projector_layers, temperature, tuple(vicreg_weights), barlow_lambda, byol_decay,
                        mask_ratio, mask_patch, tuple(decoder_widths), permutations, tile_gap, head_hidden)  # fmt: skip
    chosen = build(method, f, build_augment(train.spec), settings, channels=train.spec.channels, image_size=size,
                   total_steps=steps, generator=generator, device=device, layout=layout)  # fmt: skip
    trained = [f, *chosen.trained.values()]
    optimizer = torch.optim.Adam([p for m in trained for p in m.parameters()], lr=lr, weight_decay=weight_decay)

    started = time.monotonic()
    result = train_loop(
        chosen.step, on_device_if_fits(train.images, device),
        modules={"encoder": f, **chosen.trained, **chosen.kept}, optimizer=optimizer,
        epochs=math.ceil(steps / (len(train) // batch_size)), max_steps=steps, batch_size=batch_size, device=device,
        generator=generator, log=_run.log_scalar, checkpoint=checkpoint_path("methods", _config), log_every=log_every,
    )  # fmt: skip
    seconds = time.monotonic() - started
    trained_steps = result.steps - result.resumed_from_epoch * (len(train) // batch_size)
    _run.info.update(resumed_from_epoch=result.resumed_from_epoch, pretrain_seconds=seconds, steps=result.steps,
                     images_per_second=trained_steps * batch_size / seconds if trained_steps > 0 else None,
                     parameters={"encoder": sum(p.numel() for p in f.parameters()),
                                 "trained": sum(p.numel() for m in trained for p in m.parameters())})  # fmt: skip

    mean, std = train.spec.mean, train.spec.std
    train_features = encode(f, train.images, mean, std, device, channels_last=channels_last)
    test_features = encode(f, test.images, mean, std, device, channels_last=channels_last)
    accuracies = []
    for i, probe_seed in enumerate(probe_seeds):
        probe = run_probe(train_features, train.labels, test_features, test.labels, device, _seed=probe_seed)
        _run.log_scalar(names.PROBE_TEST_ACCURACY, probe.test_accuracy, i)
        accuracies.append(probe.test_accuracy)
    knn = knn_accuracy(train_features, train.labels, test_features, test.labels, knn_k, knn_temperature)
    _run.log_scalar(names.KNN_TEST_ACCURACY, knn)

    save_encoder(_run, f, arch)
    shown = subset_index(len(test), tsne_points, _seed)
    add_npz_artifact(_run, names.TEST_EMBEDDING_2D, pca=pca_2d(test_features[shown]),
                     tsne=tsne_2d(test_features[shown], seed=_seed), labels=test.labels[shown], index=shown)  # fmt: skip
    remove_checkpoints("methods", _config)
    linear = float(np.mean(accuracies))
    print(f"methods run {_run._id}: {method} on {train.name}, {result.steps} steps in {seconds:.0f} s; linear probe "
          f"{100 * linear:.2f}% over {len(probe_seeds)} seeds, kNN {100 * knn:.2f}%; encoder in {run_location(_run)}")  # fmt: skip
    return {"probe_test_accuracy_mean": linear, "probe_test_accuracy_std": float(np.std(accuracies)),
            names.KNN_TEST_ACCURACY: knn}  # fmt: skip


if __name__ == "__main__":
    run_commandline(ex)
