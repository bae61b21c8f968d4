"""The ``data`` ingredient: which dataset a run uses, and how much of it."""

from __future__ import annotations

from sacred import Ingredient

from lfr_report.checks import at_least, dataset, declare, optional, positive_int
from lfr_report.data import ImageDataset, load_dataset

data_ingredient = Ingredient("data")


# fmt: off
@data_ingredient.config
def config():
    name = "fashion_mnist"  # registered dataset: fashion_mnist, mnist, cifar10, stl10, digits, synthetic
    train_size = None  # images drawn at random from the train split (None: all of them)
    test_size = None  # images drawn at random from the test split (None: all of them)


@data_ingredient.named_config
def tiny():
    name = "synthetic"  # 28x28 gratings generated in memory: no files needed
    train_size = 512
    test_size = 256
# fmt: on


declare(data_ingredient, {
    "name": dataset,
    "train_size": optional(positive_int),
    "test_size": optional(at_least(2, "a test split of one image has no spread to measure")),
})  # fmt: skip


def splits(name: str, train_size: int | None, test_size: int | None, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits subsampled as a run with this ``data`` config and seed had them."""
    train = load_dataset(name, "train").subset(train_size, seed=seed)
    test = load_dataset(name, "test").subset(test_size, seed=seed + 1)
    return train, test


@data_ingredient.capture
def load_splits(
    seed: int, name: str, train_size: int | None, test_size: int | None
) -> tuple[ImageDataset, ImageDataset]:
    """The train and test splits, subsampled as configured, with the subsets drawn from
    ``seed``: the run's config seed, passed explicitly. (Sacred would give a captured
    function a ``_seed`` derived from it, which ``splits`` called with the config seed, as
    downstream evaluations do, would not reproduce.)"""
    return splits(name, train_size, test_size, seed)
