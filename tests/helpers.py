"""Assertions shared by several test modules."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from unittest import mock

import numpy as np
import pytest
from pypdf import PdfReader

from lfr_report.data import DATASETS
from lfr_report.tracking.store import RunStore
from lfr_report.tracking.transfer import signature

REPO = Path(__file__).resolve().parents[1]


def run_experiment(
    script: str | Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python experiments/SCRIPT ARGS`` in a process of its own, from ``cwd``, with ``env`` added to
    this environment; its output captured, five minutes at most. An absolute ``script`` (one a
    test wrote) is run where it is."""
    return subprocess.run([sys.executable, str(REPO / "experiments" / script), *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)  # fmt: skip


REQUIRE_TOOLS = "LFR_REQUIRE_TOOLS"  # set by .ci/run: a test whose tool is missing fails there, never skips


def statuses(runs: Path) -> list[str]:
    """The statuses of the runs in the file store ``runs``, read from their run.json, sorted."""
    return sorted(json.loads(p.read_text())["status"] for p in runs.glob("*/run.json"))


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, saying ``reason`` (a tool or server it needs is missing); with
    ``$LFR_REQUIRE_TOOLS`` set, as CI sets it, fail instead: Slurm, the live MongoDB server and
    docker-compose are features the project must prove there, and a skip would hide that."""
    if os.environ.get(REQUIRE_TOOLS):
        pytest.fail(f"{reason} ({REQUIRE_TOOLS} is set: this test must run here)", pytrace=False)
    pytest.skip(reason)


def wait_until(happened: Callable[[], object], what: str, proc=None, ceiling_s: float = 300.0) -> None:
    """Wait for an event (``happened()`` true), not for a time: poll every 20 ms up to a
    generous ceiling, failing at once if ``proc`` (a ``Popen``) ends first."""
    import time

    deadline = time.monotonic() + ceiling_s
    while not happened():
        if proc is not None and proc.poll() is not None:
            err = proc.communicate()[1] or ""  # None where stderr was not piped
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {ceiling_s:g} s")
        time.sleep(0.02)


def assert_same_runs(a: RunStore, b: RunStore) -> None:
    """Every run of ``a`` is in ``b`` under the same id, with the same record, metrics and artifacts."""
    assert sorted(r.id for r in a.runs()) == sorted(r.id for r in b.runs())
    for run in a.runs():
        copy = b.get(run.id)
        assert (copy.experiment, copy.status, copy.config, copy.result) == (
            run.experiment,
            run.status,
            run.config,
            run.result,
        )
        assert copy.info == run.info and copy.commit == run.commit and signature(copy) == signature(run)
        assert copy.artifacts == run.artifacts
        for name in run.artifacts:
            assert b.artifact(run.id, name) == a.artifact(run.id, name)
        assert b.metrics(run.id) == a.metrics(run.id)


def pdf_text(path) -> tuple[int, str]:
    """Page count and the text, whitespace collapsed (extraction breaks lines anywhere)."""
    reader = PdfReader(str(path))
    return len(reader.pages), " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def report_numbers(path) -> list[str]:
    """Every decimal number and percentage in a PDF's text, in order: what must not change
    when the same runs are read from another store (dates, paths and page numbers aside)."""
    return re.findall(r"\d+\.\d+%?", pdf_text(path)[1])


def build_session_store(root: Path, gather: Callable) -> Path:
    """Run ``gather(FileRunStore(root), "smoke")`` with the file store at ``root`` (checkpoints
    beside it, MongoDB off), restoring the environment afterwards: for session fixtures,
    which cannot use monkeypatch."""
    from lfr_report.tracking.store import FileRunStore

    with mock.patch.dict(os.environ, LFR_RUNS_DIR=str(root), LFR_CHECKPOINT_DIR=str(root.parent / "checkpoints")):
        os.environ.pop("LFR_MONGO_URL", None)
        gather(FileRunStore(root), "smoke")
    return root


# --- data sets in their real on-disk formats ---------------------------------------------


def full_configs(report, monkeypatch) -> dict[str, dict]:
    """The config each of ``report``'s ``full`` runs would get, by its key, computed by Sacred
    without running anything. A fine-tuning run's encoder is a stand-in full-scale run."""
    from lfr_report.running.runner import expected_config, load_experiment
    from lfr_report.tracking.store import Run

    load_experiment("finetune")  # imported, so that its completed_run can be replaced
    source = Run(id="1", experiment="encoder", status="COMPLETED",
                 config={"data": {"name": "tiny_imagenet"}, "transfer": "cifar10"})  # fmt: skip
    monkeypatch.setattr(sys.modules["lfr_experiments.finetune"], "completed_run", lambda run_id: source)
    configs = {}
    for need in report.needs("full"):
        named = [n for n in need.named if isinstance(n, str)]
        updates = {k: 1 if k == "encoder_run" else v for k, v in need.updates.items()}
        configs[need.key] = expected_config(load_experiment(need.experiment), named, updates)
    return configs


def dotted(config: dict, key: str):
    """``config["probe"]["lr"]`` for ``"probe.lr"``."""
    for part in key.split("."):
        config = config[part]
    return config


def patterned_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape`` (C, H, W) and their labels 0..9: class k is a grating
    of k % 5 + 1 cycles (vertical for k < 5) in a colour of its own, with noise, so that
    encoders, probes and retrieval have something to find and figures show structure."""
    rng = np.random.default_rng(seed)
    channels, height, width = shape
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    colours = np.random.default_rng(99).uniform(0.3, 1.0, (10, channels))
    images = np.empty((n, channels, height, width), dtype=np.uint8)
    for i, k in enumerate(labels):
        phase = rng.uniform(0, 2 * np.pi)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (k % 5 + 1) * (x if k < 5 else y) + phase)
        pixels = colours[k][:, None, None] * wave + rng.normal(0, 0.1, (channels, height, width))
        images[i] = np.clip(pixels * 255, 0, 255).astype(np.uint8)
    return images, labels


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """``array`` as an IDX file (MNIST's format: big-endian header, uint8 payload), gzipped or not."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_idx_dataset(directory: Path, n_train=6, n_test=4, gz=True, patterned=False) -> dict[str, np.ndarray]:
    """The four IDX files of an MNIST-like data set in ``directory`` (torchvision's ``raw`` layout)."""
    if patterned:
        (train, train_y), (test, test_y) = (
            patterned_images(n_train, (1, 28, 28)),
            patterned_images(n_test, (1, 28, 28), 1),
        )
        train, test = train[:, 0], test[:, 0]
    else:
        rng = np.random.default_rng(0)
        train, train_y = rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10
        test, test_y = rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10
    arrays = {"train-images-idx3-ubyte": train, "train-labels-idx1-ubyte": train_y,
              "t10k-images-idx3-ubyte": test, "t10k-labels-idx1-ubyte": test_y}  # fmt: skip
    for name, array in arrays.items():
        write_idx(directory / name, array, gz)
    return arrays


def write_cifar10(root: Path, per_batch=3, test: int | None = None, patterned=False) -> np.ndarray:
    """CIFAR-10's python version under ``root/cifar-10-batches-py``: ``data_batch_1..5`` of
    ``per_batch`` images each, ``test_batch`` (``test`` images, default ``per_batch``) and
    ``batches.meta``, pickled as the real files are. Returns the first batch's rows."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    first = None
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = per_batch if name != "test_batch" or test is None else test
        if patterned:
            images, labels = patterned_images(n, (3, 32, 32), seed=i)
            data, labels = images.reshape(n, 3072), labels.tolist()
        else:
            data, labels = rng.integers(0, 256, (n, 3072), dtype=np.uint8), [k % 10 for k in range(n)]
        first = data if first is None else first
        with (directory / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    with (directory / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in DATASETS["cifar10"].classes]}, f)
    return first


def write_stl10(root: Path, train: int, test: int, unlabeled: int) -> None:
    """STL-10's binary version under ``root/stl10_binary``: ``*_X.bin`` (each 3x96x96 image
    column-major per channel) and ``*_y.bin`` (labels 1..10), as the real files are."""
    directory = root / "stl10_binary"
    directory.mkdir(parents=True)
    for seed, (split, n) in enumerate((("train", train), ("test", test), ("unlabeled", unlabeled))):
        images, labels = patterned_images(n, (3, 96, 96), seed=10 + seed)
        (directory / f"{split}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
        if split != "unlabeled":
            (directory / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())


def write_full_data(root: Path) -> Path:
    """Every data set the ``full`` configs read, in their real formats, a few hundred images
    each (what ``rehearsal`` needs): CIFAR-10 (python pickles), STL-10 (binary), Tiny ImageNet
    (JPEG folders), MNIST and Fashion-MNIST (IDX, torchvision's layout)."""
    write_cifar10(root, per_batch=30, test=100, patterned=True)
    write_stl10(root, train=100, test=100, unlabeled=150)
    write_tiny_imagenet(root, per_class=1, val=200)
    for folder in ("MNIST", "FashionMNIST"):
        write_idx_dataset(root / folder / "raw", n_train=700, n_test=250, patterned=True)
    return root


def write_tiny_imagenet(root: Path, per_class: int = 1, val: int = 200) -> np.ndarray:
    """Tiny ImageNet's official layout under ``root/tiny-imagenet-200``: 200 made-up wnids
    (``n0000000k``, named ``thing k``), ``per_class`` training JPEGs each and ``val``
    validation JPEGs (labels k % 200). Returns the validation labels."""
    from lfr_report.data import formats

    wnids = [f"n{k:08d}" for k in range(200)]
    train_labels = np.repeat(np.arange(200), per_class)
    train = (patterned_images(len(train_labels), (3, 64, 64), seed=30)[0], train_labels)
    val_labels = np.arange(val) % 200
    formats.write_tiny_imagenet(root, wnids, [f"thing {k}, another name" for k in range(200)], train,
                                (patterned_images(val, (3, 64, 64), seed=31)[0], val_labels))  # fmt: skip
    return val_labels


def noisy_flipped_view(images, generator):
    """A view of a batch for the two-view learning tests: Gaussian noise (std 0.3) and a random
    horizontal flip per image, drawn from ``generator``."""
    import torch

    noisy = images + 0.3 * torch.randn(images.shape, generator=generator)
    flip = torch.rand(len(images), 1, 1, 1, generator=generator) < 0.5
    return torch.where(flip, noisy.flip(-1), noisy)
