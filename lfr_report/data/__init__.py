"""Datasets (registry and real on-disk formats), offline sources and batched augmentations."""

from lfr_report.data.augment import Augment, AugmentParams
from lfr_report.data.datasets import (
    DATASETS,
    DatasetSpec,
    ImageDataset,
    data_dir,
    get_spec,
    load_dataset,
    subset_index,
)

__all__ = [
    "DATASETS",
    "Augment",
    "AugmentParams",
    "DatasetSpec",
    "ImageDataset",
    "data_dir",
    "get_spec",
    "load_dataset",
    "subset_index",
]
