"""The SimCLR experiment at smoke scale: pretraining terms per batch, one linear
evaluation per probe seed on the transfer data set, the backbone saved."""

from __future__ import annotations

import pytest
from sacred.observers import FileStorageObserver

from lfr_report.report.runner import load_experiment
from lfr_report.tracking.artifacts import read_encoder
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
    assert accuracies.steps == [0, 1] and all(0 <= a <= 1 for a in accuracies.values)
    assert run.result["transfer_probe_test_accuracy_mean"] == pytest.approx(sum(accuracies.values) / 2)
    encoder, arch = read_encoder(store, str(run._id))
    assert arch["pool"] == "avg" and arch["dim"] == 16 and encoder.dim == 16
    assert not list((isolated / "checkpoints").iterdir())  # the checkpoint goes once the run completes


def test_impossible_batch_size_fails_before_a_run(isolated):
    ex = load_experiment("simclr")
    with pytest.raises(Exception, match="batch_size must be an integer >= 2"):
        ex.run(named_configs=["smoke"], config_updates={"batch_size": 1}, options={"--loglevel": "ERROR"})
