"""The SimCLR experiment at smoke scale: pretraining terms per batch, one linear
evaluation per probe seed on the transfer data set, the backbone saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sacred.observers import FileStorageObserver

from lfr_report import names
from lfr_report.data import Augment, AugmentParams, get_spec, load_dataset
from lfr_report.running.runner import load_experiment
from lfr_report.tracking.artifacts import read_encoder, read_npz
from lfr_report.tracking.store import FileRunStore


def test_smoke_run_pretrains_and_evaluates_over_every_probe_seed(isolated):
    ex = load_experiment("simclr")
    observer = FileStorageObserver(str(isolated / "runs"))
    ex.observers.append(observer)
    try:
        run = ex.run(named_configs=["smoke"], options={"--loglevel": "ERROR"})
    finally:
        ex.observers.remove(observer)
    store = FileRunStore(isolated / "runs")
    metrics = store.metrics(str(run._id))
    assert metrics["train_loss"].steps == list(range(8)) and metrics["test_top1"].steps == [8]
    accuracies = metrics["transfer_probe_test_accuracy"]
    assert accuracies.steps == [0, 1] and all(0.6 <= a <= 1 for a in accuracies.values)  # chance 0.1; 0.93 here
    assert run.result["transfer_probe_test_accuracy_mean"] == pytest.approx(sum(accuracies.values) / 2)
    encoder, arch = read_encoder(store, str(run._id))
    assert arch["pool"] == "avg" and arch["dim"] == 16 and encoder.dim == 16
    assert not list((isolated / "checkpoints").iterdir())  # the checkpoint goes once the run completes
    stored = store.get(str(run._id))
    assert stored.info["data_spec"] == {"name": "synthetic", "title": get_spec("synthetic").title,
                                        "classes": list(get_spec("synthetic").classes), "channels": 1,
                                        "shape": [1, 28, 28]}  # fmt: skip
    assert stored.info["parameters"] == {"backbone": sum(p.numel() for p in encoder.features.parameters()),
                                         "total": sum(p.numel() for p in encoder.parameters())}  # fmt: skip


def test_views_are_the_runs_own_augmentations_of_training_images(isolated):
    ex = load_experiment("simclr")
    observer = FileStorageObserver(str(isolated / "runs"))
    ex.observers.append(observer)
    try:
        run = ex.run(named_configs=["smoke"], config_updates={"augment.flip_p": 0.0}, options={"--loglevel": "ERROR"})
    finally:
        ex.observers.remove(observer)
    views = read_npz(FileRunStore(isolated / "runs"), str(run._id), names.VIEWS)
    assert all(views[k].shape == (8, 1, 28, 28) and views[k].dtype == np.uint8 for k in ("images", "view_1", "view_2"))
    # what the run saw: its own augmentation settings, eight training images drawn with its seed
    train = load_dataset("synthetic", "train")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in run.config["augment"].items()}
    augment = Augment(AugmentParams(**params), train.spec.mean, train.spec.std)
    generator = torch.Generator().manual_seed(run.config["seed"])
    images = train.images[torch.randperm(len(train), generator=generator)[:8]]
    assert np.array_equal(views["images"], images.numpy())
    for key in ("view_1", "view_2"):
        view = ((augment(images, generator) * augment.std + augment.mean).clamp(0, 1) * 255).round().to(torch.uint8)
        assert np.array_equal(views[key], view.numpy())
    assert not np.array_equal(views["view_1"], views["view_2"])


def test_impossible_batch_size_fails_before_a_run(isolated):
    ex = load_experiment("simclr")
    with pytest.raises(Exception, match="batch_size must be an integer >= 2"):
        ex.run(named_configs=["smoke"], config_updates={"batch_size": 1}, options={"--loglevel": "ERROR"})
