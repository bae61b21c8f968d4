"""Sacred ingredients: one concern each, with its config and captured functions.

Each has a fast named config that tests combine, e.g.
``ex.run(named_configs=["data.tiny", "probe.fast"])``.
"""

from lfr_report.ingredients.augment import augment_ingredient, build_augment
from lfr_report.ingredients.data import data_ingredient, load_splits
from lfr_report.ingredients.probe import probe_ingredient, run_probe

__all__ = [
    "augment_ingredient",
    "build_augment",
    "data_ingredient",
    "load_splits",
    "probe_ingredient",
    "run_probe",
]
