"""Datasets (registry and real on-disk formats), offline sources, batched augmentations and the
one normalisation of images (``normalise``)."""

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
from lfr_report.data.normalise import normalise

__all__ = [
    "DATASETS",
    "Augment",
    "AugmentParams",
    "DatasetSpec",
    "ImageDataset",
    "data_dir",
    "get_spec",
    "load_dataset",
    "normalise",
    "subset_index",
]
