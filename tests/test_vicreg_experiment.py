"""The VICReg experiment through Sacred: what a run records, and how bad input fails."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_experiment, statuses

from lfr_report.running.runner import load_experiment
from lfr_report.tracking.artifacts import read_npz, read_torch
from lfr_report.tracking.store import FileRunStore


def test_smoke_run_records_metrics_artifacts_and_context(smoke_runs):
    store = FileRunStore(smoke_runs)
    run = store.latest("vicreg", {"views": "augment", "mu": 25.0})
    assert run is not None and run.status == "COMPLETED"
    assert run.config["scale"] == "smoke" and run.config["data"]["name"] == "synthetic"
    assert run.info["device"].startswith("cpu") and run.info["data_source"].startswith("synthetic")
    assert run.info["data_spec"] == {"name": "synthetic", "title": "synthetic gratings", "channels": 1,
                                     "classes": [f"grating {k}" for k in range(10)], "shape": [1, 28, 28]}  # fmt: skip
    assert run.commit and len(run.commit.split("+")[0]) == 40
    metrics = store.metrics(run.id)
    steps = 512 // 64
    for term in ("loss", "invariance", "variance", "covariance"):
        assert metrics[f"train_{term}"].steps == list(range(steps))
        assert metrics[f"test_{term}"].steps == [steps]
    # Ten classes: chance is 10%. A probe that does not learn stays there; VICReg's features of gratings drawn at
    # random phases beat the raw pixels, which the pixel probe fits (train) without generalising much (51% / 18% here).
    probe, pixels = metrics["probe_test_accuracy"].values[-1], metrics["pixels_probe_test_accuracy"].values[-1]
    assert probe >= 0.3 and pixels >= 0.13 and probe >= pixels + 0.1, (probe, pixels)
    assert metrics["pixels_probe_train_accuracy"].values[-1] >= 0.9
    features = read_npz(store, run.id, "test_representations.npz")
    assert features["features"].shape == (256, 16) and features["labels"].shape == (256,)
    maps = read_npz(store, run.id, "test_embedding_2d.npz")
    assert maps["pca"].shape == (200, 2) and maps["tsne"].shape == (200, 2)
    weights = read_torch(store, run.id, "encoder.pt")
    assert weights["arch"]["name"] == "convnet" and weights["arch"]["dim"] == 16


def _cli(*args: str, env_extra: dict | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return run_experiment("vicreg.py", *args, cwd=cwd, env=env_extra)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        (["batch_size=-1"], "batch_size must be an integer >= 2"),
        (["data.name=imagenet_22k"], "data.name must be a registered dataset (fashion_mnist, "),
        (["epochs=0"], "epochs must be a positive integer"),
        (["lr=abc"], "lr must be a number > 0, got 'abc'"),  # a string where a number belongs: one line too
    ],
)
def test_impossible_config_fails_in_one_line_before_any_run(isolated, updates, expected):
    done = _cli("with", "smoke", *updates, cwd=isolated)
    assert done.returncode != 0
    assert expected in _last_line(done.stderr)
    assert "Traceback" not in done.stderr
    assert statuses(isolated / "runs") == []


def test_missing_dataset_fails_in_one_line_and_records_no_completed_run(isolated):
    done = _cli(
        "with",
        "smoke",
        "data.name=mnist",
        "data.train_size=None",
        "data.test_size=None",
        cwd=isolated,
    )
    assert done.returncode != 0
    line = _last_line(done.stderr)
    assert "dataset 'mnist' not found" in line and "data get mnist" in line
    assert "Traceback" not in done.stderr
    assert "COMPLETED" not in statuses(isolated / "runs")


def test_truncated_gzip_fails_in_one_line_and_records_no_completed_run(isolated):
    raw = isolated / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, shape in (("train-images-idx3-ubyte", (8, 28, 28)), ("train-labels-idx1-ubyte", (8,)),
                        ("t10k-images-idx3-ubyte", (4, 28, 28)), ("t10k-labels-idx1-ubyte", (4,))):  # fmt: skip
        header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
        (raw / f"{name}.gz").write_bytes(gzip.compress(header + np.zeros(shape, np.uint8).tobytes()))
    images = raw / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])
    done = _cli("with", "smoke", "data.name=fashion_mnist", cwd=isolated)
    assert done.returncode != 0
    line = _last_line(done.stderr)
    assert "dataset 'fashion_mnist' is corrupt" in line and "train-images-idx3-ubyte.gz" in line
    assert "COMPLETED" not in statuses(isolated / "runs")


def test_print_config_documents_the_values(isolated):
    done = _cli("print_config", "with", "full", cwd=isolated)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "scale = 'full'" in out and "encoder = 'resnet18'" in out and "epochs = 30" in out
    # The config comments are the documentation: each value keeps its own.
    assert "Adam learning rate (the exercise's)" in out
    assert "convnet only: channels of each 3x3 conv block" in out
    assert "PCA whitening: eigenvalues below this fraction" in out
    assert "RandomResizedCrop: fraction of the image area kept" in out
    assert statuses(isolated / "runs") == []


def test_help_lists_the_named_configs(isolated):
    done = _cli("--help", cwd=isolated)
    assert done.returncode == 0
    assert "VICReg pretraining" in done.stdout
    listed = " ".join(done.stdout.split("Named configs", 1)[1].split("Options:")[0].split())
    ex = load_experiment("vicreg")
    assert len(ex.named_configs) >= 6  # default, smoke, full, rehearsal and the two ablations
    for name in ex.named_configs:
        assert re.search(rf"[ ,]{name}[,;.]", listed), (name, listed)
    assert "of its ingredients:" in listed and "data.tiny" in listed and "probe.fast" in listed


def test_unreachable_mongo_stops_before_running(isolated):
    done = _cli("with", "smoke", cwd=isolated, env_extra={"LFR_MONGO_URL": "mongodb://127.0.0.1:9/lfr"})
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: cannot reach MongoDB at mongodb://127.0.0.1:9/lfr")
    assert "Traceback" not in done.stderr and "Started run" not in done.stderr
